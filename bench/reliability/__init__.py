"""Reliability scenarios against a real `tap-restore serve` subprocess on loopback (issue 7).

Each module is one scenario with a function the tests in tests/reliability call with
reduced counts; `python -m bench.reliability.run` runs them all with full counts and writes
bench/results/reliability.md.
"""
