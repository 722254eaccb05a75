"""Run the benchmarks in sequence and write bench/results/SUMMARY.md.

One export serves engine_speed, roofline and service_overhead, so all three measure the
same weights. Quality runs only with a trained checkpoint (on random weights its numbers
mean nothing), the flip ensemble on --bundle or else the shipped bundle. The GPU benchmark
needs a GPU machine (`bash bench/gpu.sh`); its last result is quoted when bench/results/gpu.md
exists.

Run: python -m bench.run_all [--quick] [--checkpoint W | --bundle B [--checkpoint W]]
(`make bench` runs it with --quick)
"""

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import engine_speed, flip_ensemble, quality, roofline, service_overhead
from bench.common import (
    BUNDLE_WEIGHTS,
    DEFAULT_BUNDLE,
    CpuWatch,
    Report,
    add_common_args,
    command_line,
    machine_lines,
    md_table,
    prepare_shared,
    write_markdown,
)

STEPS = ("engine_speed", "roofline", "service_overhead", "quality", "flip_ensemble")
TRAINED_ONLY = ("quality", "flip_ensemble")  # random weights would say nothing about quality


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(STEPS)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    only = args.only.split(",") if args.only else list(STEPS)
    unknown = set(only) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; choose from {STEPS}")
    common = ["--threads", str(args.threads), "--out-dir", str(args.out_dir)] + (["--quick"] if args.quick else [])
    watch = CpuWatch()
    rows: list[list[str]] = []
    failed = False

    def step(name: str, run: Callable[[], Report]) -> None:
        nonlocal failed
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            report = run()
            rows.append(
                [
                    name,
                    "<br>".join(report.headlines),
                    f"[{report.path.name}]({report.path.name})",
                    f"{time.perf_counter() - t0:.0f}",
                ]
            )
        except (Exception, SystemExit) as exc:  # one failing benchmark must not hide the others
            traceback.print_exc()
            failed = True
            rows.append(
                [
                    name,
                    f"**FAILED**: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                    "–",
                    f"{time.perf_counter() - t0:.0f}",
                ]
            )

    speed = [name for name in only if name not in TRAINED_ONLY]  # these share one exported model
    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp:
        if speed and args.bundle is None:
            print("exporting the model under test once for all benchmarks", flush=True)
            bundle, ckpt = prepare_shared(args, Path(tmp))
        else:
            bundle, ckpt = args.bundle, args.checkpoint
        model_args = ["--bundle", str(bundle)]
        eager_args = model_args + (["--checkpoint", str(ckpt)] if ckpt else [])
        modules = {"engine_speed": engine_speed, "roofline": roofline, "service_overhead": service_overhead}
        for name in speed:
            argv_step = common + (model_args if name == "service_overhead" else eager_args)
            step(name, lambda m=modules[name], a=argv_step: m.main(a))
    if "quality" in only:
        trained = args.checkpoint or (args.bundle / BUNDLE_WEIGHTS if args.bundle else quality.DEFAULT_CHECKPOINT)
        if trained.is_file():
            step("quality", lambda: quality.main(common + ["--checkpoint", str(trained)]))
        else:
            rows.append(
                [
                    "quality",
                    f"skipped: no trained checkpoint at {trained} (random weights would say "
                    "nothing); run `python -m bench.quality --checkpoint W`",
                    "–",
                    "0",
                ]
            )
    if "flip_ensemble" in only:
        trained_bundle = args.bundle or DEFAULT_BUNDLE
        step("flip_ensemble", lambda: flip_ensemble.main(common + ["--bundle", str(trained_bundle)]))
    gpu = args.out_dir / "gpu.md"
    gpu_note = (
        f"earlier run: {gpu.read_text().splitlines()[0].lstrip('# ')}"
        if gpu.is_file()
        else "not run here: needs a GPU (`bash bench/gpu.sh`)"
    )
    rows.append(["gpu", gpu_note, "[gpu.md](gpu.md)" if gpu.is_file() else "–", "–"])

    header = machine_lines(args.threads, watch, command_line("bench.run_all", argv))
    body = [md_table(["benchmark", "result (target: verdict)", "details", "seconds"], rows, "lllr")]
    write_markdown(args.out_dir, "SUMMARY", "Benchmarks" + (" (--quick)" if args.quick else ""), header, body)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
