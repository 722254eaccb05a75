"""Benchmarks: engine speed, distance to the hardware limit, service overhead, quality, GPU.

Each script writes a Markdown table (and a plot where useful) to bench/results/ and prints
it; `python -m bench.run_all [--quick]` runs them in sequence and writes SUMMARY.md.
"""
