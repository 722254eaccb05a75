"""The service reads the artifact bundle only: importing it must not pull in torch."""

import subprocess
import sys


def test_service_imports_without_torch():
    code = (
        "import sys; import service.app, service.cli, service.engine, service.pipeline; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
