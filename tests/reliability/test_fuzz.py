"""OpenAPI fuzzing with schemathesis against the running server (issue 7)."""

import pytest

from bench.reliability.fuzz import fuzz

pytest.importorskip("schemathesis")

MAX_EXAMPLES = 50  # per operation in the fuzzing phase; bench.reliability.run uses more


def test_no_server_error_and_every_response_as_documented(shared_server, tmp_path):
    report = fuzz(shared_server.url, tmp_path, MAX_EXAMPLES)
    assert report.returncode == 0 and not report.failures, report.output[-8000:]
    assert report.accepted["POST /restore"] > 0, "no successful restore was fuzzed: the image hook is not working"
    assert "Traceback" not in shared_server.log()
