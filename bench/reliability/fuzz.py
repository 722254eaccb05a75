"""OpenAPI fuzzing with schemathesis' CLI against a running server: no 5xx, every response as documented.

The CLI runs every phase (schema examples, coverage of boundary and invalid values, fuzzing)
with all checks but `positive_data_acceptance`: random bytes for `image` are schema-valid yet
not an image, so 415 for "positive" data is the documented answer. The hooks in fuzz_hooks
put real images into most positive restore bodies so success responses get checked too.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXCLUDED_CHECKS = ("positive_data_acceptance",)
HOOKS = "bench.reliability.fuzz_hooks"


@dataclass(frozen=True)
class FuzzReport:
    returncode: int
    cases: int
    failures: list[str]  # one JSON line per unique failure, as schemathesis reports it
    accepted: dict[str, int]  # operation -> generated cases answered 2xx
    rejected: dict[str, int]  # operation -> generated cases answered 4xx
    seconds: float
    output: str  # the CLI's console output, for failure messages


def fuzz(url: str, workdir: Path, max_examples: int = 50, timeout_s: float = 600.0) -> FuzzReport:
    """Run `schemathesis run` on URL/openapi.json; deterministic generation, reports under `workdir`."""
    report_path = workdir / "schemathesis.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        f"--exclude-checks={','.join(EXCLUDED_CHECKS)}",
        f"--max-examples={max_examples}",
        "--generation-deterministic",
        "--workers=1",
        "--request-timeout=30",
        "--report=json",
        f"--report-json-path={report_path}",
        "--no-color",
    ]
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": pythonpath}
    started = time.monotonic()
    # cwd: schemathesis keeps a cache folder in the working directory
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    if not report_path.is_file():
        raise RuntimeError(f"schemathesis wrote no report (exit {done.returncode}):\n{output[-3000:]}")
    report = json.loads(report_path.read_text())
    accepted: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for operation, phases in report.get("valid_rates", {}).items():
        accepted[operation] = sum(phase["accepted"] for phase in phases.values())
        rejected[operation] = sum(phase["rejected"] for phase in phases.values())
    failures = [json.dumps(item, sort_keys=True)[:2000] for item in report["failures"] + report["errors"]]
    return FuzzReport(done.returncode, report["test_cases"]["generated"], failures, accepted, rejected, seconds, output)
