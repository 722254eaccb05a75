"""The hostile-input corpus, in sequence, against one server process (issue 7)."""

from bench.reliability.corpus import PROBES, run_corpus

RSS_LIMIT_MB = 50  # measured: +2 MB; a single decoded 50000x50000 bomb would be 7.5 GB


def test_corpus_gets_documented_answers_and_memory_stays_flat(shared_server):
    run = run_corpus(shared_server)
    assert not run.problems, "\n".join(f"{name}: {problem}" for name, problem in run.problems.items())
    assert len(run.statuses) == len(PROBES)
    growth = run.rss_rounds_mb[-1] - run.rss_warm_mb
    assert growth < RSS_LIMIT_MB, f"RSS {run.rss_warm_mb:.0f} MB after warm-up -> {run.rss_rounds_mb[-1]:.0f} MB"
    assert "Traceback" not in shared_server.log()
