"""Quality: `tap-train evaluate` (training.evaluate.run_evaluation) as a benchmark table.

Rain100H (task rain) and SOTS-indoor (task haze) from ../shared/data/validation, and
synthetic validation for every weather with a generator (data engine v1's weather, and v2's on
the same photos when ../shared/data has the streak layers). Methods per image: the input
itself, the model under the true task's prompt, auto mode, and the dark channel prior on
haze, so the numbers have context. Do no harm (`training.no_harm`): clean in, clean out and
the blotch measure on the dev split of weather-photos/clear under every prompt and auto, and
the blotch measure on real/haze under `haze`, and on real/rain under `rain` the brightness change
and the fine-detail change (streaks taken out). Only meaningful for the trained model: the
checkpoint defaults to artifacts/default/weights.safetensors. grid.png and the previews show
dataset images, which may not be published, so they stay in a temporary folder.

Run: python -m bench.quality [--quick] [--checkpoint W]
"""

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from bench.common import (
    BUNDLE_WEIGHTS,
    DEFAULT_BUNDLE,
    REPO,
    RESULTS,
    SHARED_DATA,
    CpuWatch,
    Report,
    available_cpus,
    command_line,
    machine_lines,
    md_table,
    write_markdown,
)

NAME = "quality"
DEFAULT_CHECKPOINT = DEFAULT_BUNDLE / BUNDLE_WEIGHTS
PAIRED = {"rain100h": "rain", "sots-indoor": "haze"}  # folder under validation/ -> task
NO_HARM_CLEAR = Path("weather-photos/clear")  # under --data: clear photos (their dev split)
NO_HARM_HAZE = Path("real/haze")  # under --data: real dense haze
NO_HARM_RAIN = Path("real/rain")  # under --data: real rain (how much the rain prompt darkens it)
STREAKS = Path("rain-streaks")  # under --data: the rendered streak layers of data engine v2's rain
KEEP_PROMPTS = ("rain", "raindrop", "snow")  # prompts that should leave a clear photo almost unchanged


def subset(root: Path, limit: int, into: Path) -> Path:
    """The first `limit` pairs of a paired folder, as symlinks under `into/<root.name>` (name kept)."""
    from training.datasets import list_images

    folder = into / root.name
    for sub in ("input", "target"):
        (folder / sub).mkdir(parents=True)
    for path in list_images(root / "input")[:limit]:
        (folder / "input" / path.name).symlink_to(path.resolve())
        (folder / "target" / path.name).symlink_to((root / "target" / path.name).resolve())
    return folder


def cell(methods: dict, method: str) -> str:
    """'PSNR-Y / SSIM-Y' of one method, or a dash when it was not run on this dataset."""
    return f"{methods[method]['psnr_y']:.2f} / {methods[method]['ssim_y']:.3f}" if method in methods else "–"


def summary_rows(results: dict) -> list[list[str]]:
    """One row per dataset: every method, and the gain of the given task over the input (PSNR-Y)."""
    rows = []
    for name, d in results["datasets"].items():
        m = d["methods"]
        gain = m["given task"]["psnr_y"] - m["input"]["psnr_y"]
        methods = [cell(m, k) for k in ("input", "given task", "auto", "dark channel prior")]
        rows.append([name, d["task"], str(m["input"]["n"]), *methods, f"{gain:+.2f}"])
    return rows


def no_harm_headline(no_harm: dict) -> str:
    """Worst clean-in/clean-out PSNR under the prompts that should change nothing, worst blotch anywhere."""
    prompts = no_harm.get("clear", {}).get("prompts", {})
    psnrs = [prompts[p]["psnr_rgb"]["worst"] for p in KEEP_PROMPTS if p in prompts]
    blotches = [
        d["blotch"]["worst"] for group in no_harm.values() for d in group["prompts"].values() if d["blotch"]["worst"]
    ]
    parts = []
    if psnrs:
        parts.append(
            f"clean in, clean out ({'/'.join(p for p in KEEP_PROMPTS if p in prompts)}) worst {min(psnrs):.1f} dB"
        )
    if blotches:
        parts.append(f"blotch worst {max(blotches):.1f}")
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="trained weights (.safetensors)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder with clean/ and validation/")
    parser.add_argument("--quick", action="store_true", help="a few images per set at reduced size")
    parser.add_argument("--synthetic", type=int, help="synthetic images per weather (default 8; --quick 2)")
    parser.add_argument("--limit", type=int, help="first N pairs of each validation set (default all; --quick 4)")
    parser.add_argument("--size", type=int, help="longer side at most this (default 0: full size; --quick 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-flat-guard", action="store_true", help="the bare network, without the service's guard")
    parser.add_argument("--threads", type=int, default=available_cpus(), help="torch threads")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    synthetic = args.synthetic if args.synthetic is not None else (2 if args.quick else 8)
    limit = args.limit if args.limit is not None else (4 if args.quick else 0)
    size = args.size if args.size is not None else (256 if args.quick else 0)
    if not args.checkpoint.is_file():
        raise SystemExit(
            f"no checkpoint at {args.checkpoint}: quality needs the trained model; pass --checkpoint "
            f"runs/<run>/<stage>/model.safetensors (or put the weights at {DEFAULT_CHECKPOINT.relative_to(REPO)})"
        )
    validation = args.data / "validation"
    no_harm = [args.data / NO_HARM_CLEAR, args.data / NO_HARM_HAZE, args.data / NO_HARM_RAIN]
    missing = [p for p in [args.data / "clean", *(validation / f for f in PAIRED), *no_harm] if not p.is_dir()]
    if missing:
        raise SystemExit(f"data not found: {', '.join(map(str, missing))} (see ../shared/data/README.md)")

    import torch

    from contract.flat_guard import FlatGuard
    from model.checkpoint import load_model
    from training.evaluate import format_report, run_evaluation

    torch.set_num_threads(args.threads)
    watch = CpuWatch()
    model, _ = load_model(args.checkpoint)
    skipped = [f"{folder} (task {task})" for folder, task in PAIRED.items() if task not in model.tasks]
    with tempfile.TemporaryDirectory(prefix="tap-quality-") as tmp:
        paired = [
            (model.tasks.index(task), subset(validation / folder, limit, Path(tmp)) if limit else validation / folder)
            for folder, task in PAIRED.items()
            if task in model.tasks
        ]
        results = run_evaluation(
            model,
            clean_dir=args.data / "clean",
            synthetic_per_task=synthetic,
            paired=paired,
            out_dir=Path(tmp) / "eval",
            seed=args.seed,
            size=size,
            no_harm_clear=no_harm[0],
            no_harm_haze=no_harm[1],
            no_harm_rain=no_harm[2],
            synthetic_v2_streaks=args.data / STREAKS if (args.data / STREAKS).is_dir() else None,
            flat_guard=None if args.no_flat_guard else FlatGuard(),
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{NAME}.json").write_text(json.dumps(results, indent=2))

    digest = hashlib.sha256(args.checkpoint.read_bytes()).hexdigest()[:12]
    header = machine_lines(args.threads, watch, command_line("bench.quality", argv))
    header += [f"- Checkpoint: `{args.checkpoint}` (sha256 {digest}…), tasks {', '.join(model.tasks)}"]
    if skipped:
        header.append(f"- Skipped (the model has no such task): {', '.join(skipped)}")
    if limit or size:
        header.append(f"- Reduced: first {limit or 'all'} pairs per validation set, longer side ≤ {size or 'full'} px")
    body = [
        "## Summary (PSNR-Y dB / SSIM-Y; gain = given task − input, PSNR-Y)",
        "",
        md_table(
            ["dataset", "task", "N", "input", "given task", "auto", "dark channel prior", "gain dB"],
            summary_rows(results),
            "lllrrrrr",
        ),
        "",
        *[
            "#" + line if line.startswith("#") else line
            for line in format_report(results).splitlines()
            if not line.startswith("grid.png")
        ],
        f"Full numbers: {NAME}.json. The before/after grid and the previews are not kept: they show dataset "
        "images (`tap-train evaluate --no-harm-clear ... --out runs/...` keeps them to look at).",
    ]
    gains = ", ".join(
        f"{name} {d['methods']['given task']['psnr_y'] - d['methods']['input']['psnr_y']:+.2f} dB"
        for name, d in results["datasets"].items()
        if not d["source"].startswith("synthetic")
    )
    auto = results["auto"]
    headline = f"given task vs input, PSNR-Y: {gains or 'no paired sets'}" + (
        f"; auto-mode accuracy {auto['accuracy']:.2f}" if auto and auto["accuracy"] is not None else ""
    )
    path = write_markdown(args.out_dir, NAME, "Quality: restoration on validation data", header, body)
    return Report(NAME, path, [headline, no_harm_headline(results["no_harm"])])


if __name__ == "__main__":
    main()
