"""Training speed per CPU-second: stage-1 samples per second, the old recipe against the new one.

Each recipe runs the real training loop (`training.loops.fit`: the data engine in a DataLoader
worker, bf16 autocast where the recipe asks for it, AdamW, gradient clipping) for a fixed number
of steps on the shared clean photos. Samples/s is measured over the logged intervals after the
first (which holds start-up), and recipes run round-robin so drift on a shared machine hits all
alike; the speed-up is the median over rounds of the per-round ratio. The steps in between show
what each setting adds. Target: the new recipe >= 2x the old one (issue 13).

Run: python -m bench.train_speed [--quick] [--steps N] [--rounds R]
"""

import argparse
import csv
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import RESULTS, SHARED_DATA, CpuWatch, Report, command_line, machine_lines, md_table, write_markdown

NAME = "train_speed"
TARGET = 2.0
CLEAN_DIR = SHARED_DATA / "clean"


@dataclass(frozen=True)
class Recipe:
    label: str
    threads: int
    amp: bool
    channels_last: bool
    batch_size: int
    arch: int = 2


OLD = Recipe(
    "old: configs/default until issue 13 (architecture 1, fp32, 1 thread, NCHW, batch 8)", 1, False, False, 8, 1
)
RECIPES = (
    OLD,
    Recipe(
        "old settings, architecture 2 (more work per pixel: full-resolution stem and refinement)", 1, False, False, 8
    ),
    Recipe("+ 2 intra-op threads", 2, False, False, 8),
    Recipe("+ bf16 autocast", 2, True, False, 8),
    Recipe("+ channels-last", 2, True, True, 8),
    Recipe("+ batch 16: all new settings", 2, True, True, 16),
)
SAME_NETWORK = RECIPES[1]  # the old settings on architecture 2: what the settings alone buy


def run_recipe(recipe: Recipe, steps: int, log_every: int, clean_dir: Path, work: Path) -> float:
    """Samples per second of `steps` stage-1 steps under one recipe (start-up interval excluded)."""
    import torch

    from model.net import NET_VARIANTS, TAPNet
    from training.config import TrainConfig
    from training.loops import PretrainStep, build_training_set, fit

    cfg = TrainConfig(steps=steps, threads=recipe.threads, amp=recipe.amp, channels_last=recipe.channels_last)
    cfg.log_every, cfg.save_every, cfg.optim.warmup_steps = log_every, 10**9, 1
    cfg.data.clean_dir, cfg.data.batch_size = str(clean_dir), recipe.batch_size
    torch.manual_seed(0)
    model = TAPNet(replace(NET_VARIANTS["default"], arch=recipe.arch))
    params = model.freeze_for("pretrain")
    out = Path(tempfile.mkdtemp(dir=work))
    fit(PretrainStep(model), params, build_training_set(cfg, model.tasks), cfg, out, "pretrain")
    with (out / "metrics.csv").open() as f:
        rates = [float(row["img_s"]) for row in csv.DictReader(f)][1:]
    return statistics.median(rates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a few minutes)")
    parser.add_argument("--steps", type=int, help="steps per recipe and round (default 60, quick 30)")
    parser.add_argument("--rounds", type=int, help="round-robin rounds (default 3, quick 2)")
    parser.add_argument("--clean-dir", type=Path, default=CLEAN_DIR)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    steps = args.steps or (30 if args.quick else 60)
    rounds = args.rounds or (2 if args.quick else 3)
    log_every = max(5, steps // 6)
    watch = CpuWatch()
    rates: dict[Recipe, list[float]] = {r: [] for r in RECIPES}
    with tempfile.TemporaryDirectory(prefix="tap-train-speed-") as tmp:
        for k in range(rounds):
            order = RECIPES[k % len(RECIPES) :] + RECIPES[: k % len(RECIPES)]
            for recipe in order:
                rates[recipe].append(run_recipe(recipe, steps, log_every, args.clean_dir, Path(tmp)))
                print(f"round {k + 1}: {recipe.label}: {rates[recipe][-1]:.1f} samples/s", flush=True)
    ratios = {r: statistics.median(a / b for a, b in zip(rates[r], rates[OLD], strict=True)) for r in RECIPES}
    rows = [
        [r.label, f"{statistics.median(rates[r]):.1f}", " / ".join(f"{v:.1f}" for v in rates[r]), f"{ratios[r]:.2f}x"]
        for r in RECIPES
    ]
    new = RECIPES[-1]
    verdict = "met" if ratios[new] >= TARGET else "**not met**"
    settings_only = statistics.median(a / b for a, b in zip(rates[new], rates[SAME_NETWORK], strict=True))
    headline = (
        f"stage-1 training {ratios[new]:.2f}x the samples/s of the old recipe (target {TARGET:.0f}x: {verdict}); "
        f"{settings_only:.2f}x on the same network (architecture 2 costs "
        f"{1 - statistics.median(rates[SAME_NETWORK]) / statistics.median(rates[OLD]):.0%} of the old speed)"
    )
    body = [
        f"Stage-1 loop (`training.loops.fit`) on 128² crops of the clean photos, data engine v2 in one DataLoader "
        f"worker; {steps} steps per recipe per round ({log_every}-step intervals, the first "
        f"dropped), {rounds} rounds round-robin. Ratio: median over rounds of samples/s over the old recipe's. "
        "configs/default now trains 8 crops of 192² per step (the pixels of 18 crops of 128²) with these settings.",
        "",
        md_table(["recipe", "samples/s (median)", "per round", "vs old"], rows),
        "",
        f"**{headline}.**",
        "",
        "Quality at equal steps (bf16 vs fp32, 1000 steps) is measured by `bash configs/precision/run.sh`; "
        "see `bench/results/train_precision.md`.",
    ]
    header = machine_lines(2, watch, command_line("bench.train_speed", argv))
    path = write_markdown(args.out_dir, NAME, "Training speed per CPU-second", header, body)
    return Report(NAME, path, [headline])


if __name__ == "__main__":
    main()
