"""Overload: open-loop arrivals past capacity on loopback (issue 7).

The arrival rate is set from the service time measured just before, so "past capacity" holds
on any machine (batching 2 tiles at most doubles the one-at-a-time rate). At 30x, refusals
must stay cheap: they are decided from the headers (service/shedding.py), before any body is
read; bench.reliability.run measured 503 p95 29 ms and /healthz p95 24 ms there.
"""

import pytest

from bench.reliability.load import OVERLOAD_SETTINGS, overload, percentile
from bench.reliability.soak import photo

DURATION_S = 3.0
# Generous for a shared CI machine (single runs there measured up to 0.2 s): the bench's target is
# 50 ms for both; with an httpx load generator a 30x flood took 3.2 s (p95) to refuse.
REFUSAL_P95_S = 0.5
HEALTH_P95_S = 0.5


@pytest.mark.parametrize("factor", [4.0, 30.0])
def test_past_capacity_refuses_fast_serves_within_deadline_and_stays_healthy(serve, tiny_bundle, factor):
    server = serve(tiny_bundle, **OVERLOAD_SETTINGS)
    deadline_s = OVERLOAD_SETTINGS["request_timeout_s"]
    rate, report = overload(server.url, server.client, photo(512, 512, "JPEG", 0), factor, DURATION_S, deadline_s)
    summary = f"{rate:.0f}/s for {DURATION_S:g} s: {dict(report.statuses)}"

    assert set(report.statuses) == {200, 503}, summary  # no 504, no 5xx, no transport error
    refused = [o for o in report.outcomes if o.status == 503]
    assert all(o.retry_after == "1" and o.error_code == "queue_full" for o in refused), summary
    assert percentile(report.latencies(503), 95) < REFUSAL_P95_S, summary
    assert max(report.latencies(200)) < deadline_s, summary
    assert report.health_failures == 0 and percentile(report.health_latencies_s, 95) < HEALTH_P95_S, summary

    ready = server.client.get("/readyz").json()
    assert (ready["tiles_in_flight"], ready["tiles_queued"]) == (0, 0)  # no capacity leaked
    assert server.restore(photo(64, 64, "PNG", 1), degradation="rain").status_code == 200
