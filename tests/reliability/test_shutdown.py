"""Graceful shutdown: SIGTERM during load (issue 7)."""

from bench.reliability.load import OVERLOAD_SETTINGS
from bench.reliability.shutdown import (
    CLEAN_EXIT,
    SETTINGS,
    SHUTDOWN_COMPLETE,
    graceful_shutdown,
    shutdown_under_flood,
)
from bench.reliability.soak import photo

REQUESTS = 8
# A new connection after SIGTERM is refused once the listener is closed, or reset if it was still
# in the listener's backlog then: either way no request was read.
NOT_CONNECTED = ("ConnectionRefused", "ConnectionReset")
EXIT_LIMIT_S = 20.0  # drain (~2 s of queued tiles here) + lifespan shutdown; measured ~2-3 s


def test_sigterm_drains_in_flight_refuses_new_and_exits_cleanly(serve, tiny_bundle):
    server = serve(tiny_bundle, **SETTINGS)
    report = graceful_shutdown(server, photo(700, 700, "JPEG", 0), REQUESTS)

    assert [o.status for o in report.in_flight] == [200] * REQUESTS, report.in_flight
    assert report.late_while_alive, "the server exited before any new request could be tried"
    for outcome in report.late_while_alive:  # refused at connect, or a 503 from the draining app
        assert outcome.status == 503 or outcome.transport_error.startswith("ConnectError"), outcome
    assert report.returncode in CLEAN_EXIT, report.log[-3000:]
    assert report.exit_s < EXIT_LIMIT_S
    assert SHUTDOWN_COMPLETE in report.log and "Traceback" not in report.log, report.log[-3000:]


def test_sigterm_in_a_flood_answers_everything_in_flight_and_exits_by_the_deadline(serve, tiny_bundle):
    server = serve(tiny_bundle, **OVERLOAD_SETTINGS)
    deadline_s = OVERLOAD_SETTINGS["request_timeout_s"]
    report = shutdown_under_flood(server, photo(512, 512, "JPEG", 0), factor=30.0, before_s=1.5)

    assert report.in_flight, "nothing was in flight at SIGTERM"
    assert {o.status for o in report.in_flight} <= {200, 503}, report.in_flight  # every one answered
    assert 200 in {o.status for o in report.in_flight}, "no admitted request was caught mid-flight"
    assert all(o.latency_s < deadline_s for o in report.before + report.in_flight)
    for outcome in report.after:  # answered, or refused/reset at connect (never processed: safe to retry)
        assert outcome.status in (200, 503) or outcome.transport_error.startswith(NOT_CONNECTED), outcome
    assert report.returncode in CLEAN_EXIT, report.log[-3000:]
    assert report.exit_s < deadline_s
    assert SHUTDOWN_COMPLETE in report.log and "Traceback" not in report.log, report.log[-3000:]
