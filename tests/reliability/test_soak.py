"""Soak with a reduced count: mixed sizes, formats and degradations; memory must stay flat (issue 7)."""

import pytest

from bench.reliability.soak import MAX_GROWTH, SETTINGS, soak

REQUESTS = 300  # bench.reliability.soak runs 3000


@pytest.mark.slow
def test_resident_memory_stays_flat(serve, tiny_bundle):
    server = serve(tiny_bundle, **SETTINGS)
    report = soak(server, REQUESTS)
    assert not report.failures, report.failures[:5]
    assert report.growth < MAX_GROWTH, f"RSS {report.rss_warm_mb:.1f} MB after warm-up -> {report.rss_end_mb:.1f} MB"
