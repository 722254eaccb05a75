"""The shared contract sits below everything: `contract` needs neither torch nor onnxruntime, and
`model` and `training` never import `service` (issue 32), so the model never depends on the web app."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[str, set[str]]:
    """File -> the top-level modules its import statements name (function-level imports too)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_model_and_training_never_import_service():
    offenders = {f for pkg in ("model", "training") for f, names in imported_modules(pkg).items() if "service" in names}
    assert not offenders, f"import service from model/ or training/: {sorted(offenders)}"
    assert imported_modules("model"), "no files found: the walk itself is broken"


def test_contract_imports_only_the_standard_library_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "contract"}
    extra = {f: names - allowed for f, names in imported_modules("contract").items() if names - allowed}
    assert not extra, f"contract/ must stay light: {extra}"
    code = (
        "import sys, contract.bundle, contract.classifier_view, contract.auto_rule, contract.flat_guard; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'service') if m in sys.modules))"
    )
    run = {"capture_output": True, "text": True, "timeout": 120, "check": True, "cwd": ROOT}
    result = subprocess.run([sys.executable, "-c", code], **run)
    assert result.stdout.strip() == "[]"
