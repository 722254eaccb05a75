"""Flip ensemble: what restoring each tile's mirror image too, and averaging, buys and costs.

Through the service's own pipeline (in-process, onnxruntime on CPU, the shipped bundle): every
image is sent as PNG with its true weather named, once with `ensemble` off and once on, the two
calls interleaved in alternating order. Quality is PSNR-Y / SSIM-Y of the returned image against
the ground truth on Rain100H-dev and SOTS-indoor-dev (../shared/data/validation) and on the
synthetic validation of every weather (`tap-train evaluate`'s held-out photos, seed 0); cost is
the median per-image ratio of the pipeline's time, on vs off. A second table scores ensembles the
service does not offer, on the dev sets through the bare engine: up-down mirroring and an 8-px
shift added to the left-right mirror, so the choice of the two-pass mirror stays reproducible.

Run: python -m bench.flip_ensemble [--quick] [--bundle B] [--synthetic 8]
"""

import argparse
import asyncio
import functools
import io
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import (
    DEFAULT_BUNDLE,
    RESULTS,
    SHARED_DATA,
    CpuWatch,
    Report,
    command_line,
    machine_lines,
    md_table,
    paired_ratio,
    write_markdown,
)

NAME = "flip_ensemble"
PAIRED = {"rain100h": "rain", "sots-indoor": "haze"}  # folder under validation/ -> task
MODES = {"one pass": False, "flip ensemble": True}
SHIFT = 8  # px: half the backbone's 16-px stride, the offset it is least equivariant to


def _mirror(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[..., ::-1])


def _flip_up_down(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[..., ::-1, :])


def _service_mirror(run, x: np.ndarray) -> np.ndarray:
    """The service's own two-pass mirror (service.pipeline), the image and its mirror in one batch."""
    from service.pipeline import merge_mirrors, with_mirrors

    return merge_mirrors(list(run(np.stack(with_mirrors([x[0]])))))[0][None]


def _shifted(run, x: np.ndarray) -> np.ndarray:
    """Restore x moved SHIFT px down and right (reflect-padded), moved back."""
    h, w = x.shape[-2:]
    padded = np.pad(x, ((0, 0), (0, 0), (SHIFT, 0), (SHIFT, 0)), mode="reflect")
    return run(padded)[..., SHIFT : SHIFT + h, SHIFT : SHIFT + w]


ALTERNATIVES = {  # name -> restoration of a (1, 3, H, W) image given run(x) -> f(x)
    "one pass": lambda run, x: run(x),
    "left-right mirror (2 passes, the service's)": _service_mirror,
    "up-down mirror (2 passes)": lambda run, x: (run(x) + _flip_up_down(run(_flip_up_down(x)))) / 2,
    "left-right mirror + 8-px shift (4 passes)": lambda run, x: (
        (run(x) + _mirror(run(_mirror(x))) + _shifted(run, x) + _mirror(_shifted(run, _mirror(x)))) / 4
    ),
}


@dataclass
class Scores:
    psnr: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    ssim: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    seconds: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})


def sources(quick: bool, synthetic: int, tasks: list[str]) -> dict[str, tuple[str, list]]:
    """{set name: (task, [(lq uint8, gt uint8)])}: the paired dev sets, then synthetic weather."""
    from training import synth
    from training.evaluate import held_out_photos, paired_samples, synthetic_samples

    found: dict[str, tuple[str, list]] = {}
    for folder, task in PAIRED.items():
        root = SHARED_DATA / "validation" / folder
        if root.is_dir() and task in tasks:
            samples = islice(paired_samples(root, tasks.index(task), 0), 4 if quick else None)
            found[f"{folder}-dev"] = (task, [(s.lq, s.gt) for s in samples])
    clean = SHARED_DATA / "clean"
    if synthetic > 0 and clean.is_dir():
        photos = held_out_photos(clean)
        for t, task in enumerate(tasks):
            if task in synth.GENERATORS:
                samples = synthetic_samples(photos, t, task, synthetic, seed=0)
                found[f"synthetic {task}"] = (task, [(s.lq, s.gt) for s in samples])
    return found


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def measure(bundle: Path, threads: int, sets: dict[str, tuple[str, list]]) -> dict[str, Scores]:
    from service.pipeline import local_pipeline
    from service.settings import Settings
    from training.metrics import image_metrics

    settings = Settings(
        bundle_path=bundle,
        device="cpu",
        intra_op_threads=threads,
        prompt_reload_interval_s=0,
        request_timeout_s=1e9,
        queue_size=1 << 20,
    )
    results: dict[str, Scores] = {}
    async with local_pipeline(settings) as pipeline:
        for name, (task, pairs) in sets.items():
            scores = results[name] = Scores()
            for index, (lq, gt) in enumerate(pairs):
                data = png(lq)
                order = list(MODES) if index % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    t0 = time.perf_counter()
                    restored = await pipeline.restore(data, task, "png", ensemble=MODES[mode])
                    scores.seconds[mode].append(time.perf_counter() - t0)
                    out = np.asarray(Image.open(io.BytesIO(restored.data)).convert("RGB"))
                    metrics = image_metrics(out, gt)
                    scores.psnr[mode].append(metrics["psnr_y"])
                    scores.ssim[mode].append(metrics["ssim_y"])
            gain = np.mean(scores.psnr["flip ensemble"]) - np.mean(scores.psnr["one pass"])
            print(f"{name}: {len(pairs)} images, flip ensemble {gain:+.2f} dB", flush=True)
    return results


def score_alternatives(bundle: Path, threads: int, sets: dict[str, tuple[str, list]]) -> dict[str, dict[str, float]]:
    """{dev set: {ensemble: mean PSNR-Y}} through the service's engine, whole images."""
    from bench.common import service_engine
    from training.metrics import image_metrics, quantize

    engine = service_engine(bundle, threads)
    scores: dict[str, dict[str, float]] = {}
    for name, (task, pairs) in sets.items():
        if not name.endswith("-dev"):
            continue
        run = functools.partial(engine.run_backbone, prompts=engine.prompts[task][None])
        values: dict[str, list[float]] = {alt: [] for alt in ALTERNATIVES}
        for lq, gt in pairs:
            x = np.ascontiguousarray((lq.astype(np.float32) / 255).transpose(2, 0, 1)[None])
            for alt, restore in ALTERNATIVES.items():
                out = restore(run, x)
                values[alt].append(image_metrics(quantize(out[0].transpose(1, 2, 0)), gt)["psnr_y"])
        scores[name] = {alt: float(np.mean(v)) for alt, v in values.items()}
        print(f"{name}: " + ", ".join(f"{alt} {v:.2f}" for alt, v in scores[name].items()), flush=True)
    return scores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.flip_ensemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 pairs per dev set, 2 synthetic images per weather")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--synthetic", type=int, default=8, help="synthetic images per weather (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from contract.bundle import read_manifest

    manifest = read_manifest(args.bundle)
    watch = CpuWatch()
    sets = sources(args.quick, 2 if args.quick else args.synthetic, list(manifest["tasks"]))
    if not sets:
        raise SystemExit(f"no validation data under {SHARED_DATA}: nothing to measure")
    results = asyncio.run(measure(args.bundle, args.threads, sets))
    alternatives = score_alternatives(args.bundle, args.threads, sets)
    rows, gains, ratios = [], [], []
    for name, scores in results.items():
        one, ens = (float(np.mean(scores.psnr[m])) for m in MODES)
        ssim_one, ssim_ens = (float(np.mean(scores.ssim[m])) for m in MODES)
        ratio = paired_ratio(scores.seconds["flip ensemble"], scores.seconds["one pass"])
        gains.append(ens - one)
        ratios.append(ratio)
        rows.append(
            [
                name,
                str(len(scores.psnr["one pass"])),
                f"{one:.2f} / {ssim_one:.3f}",
                f"{ens:.2f} / {ssim_ens:.3f}",
                f"{ens - one:+.2f}",
                f"{ratio:.2f}x",
            ]
        )
    headline = (
        f"{manifest['model_version']}: flip ensemble {min(gains):+.2f} to {max(gains):+.2f} dB PSNR-Y "
        f"(mean {np.mean(gains):+.2f}) over {len(gains)} sets, {np.median(ratios):.2f}x the time"
    )
    body = [
        f"Bundle `{args.bundle}` ({manifest['model_version']}), weather named, each image sent as the "
        "service gets it (whole, or tiled when larger than a tile). Cells: mean PSNR-Y / SSIM-Y; time is "
        "the median per-image ratio of the pipeline (decode, backbone, encode), ensemble on vs off.",
        "",
        md_table(["set", "images", "one pass", "flip ensemble", "gain (dB)", "time"], rows),
        "",
        f"**{headline}.**",
        "",
        "## Ensembles the service does not offer, beside those it does",
        "",
        "Dev sets, weather named, whole images through the bare engine (service/engine.py); mean PSNR-Y. "
        "The mirror row runs service/pipeline.py's own mirror functions.",
        "",
        md_table(
            ["ensemble", *alternatives],
            [[alt] + [f"{alternatives[d][alt]:.2f}" for d in alternatives] for alt in ALTERNATIVES],
        ),
    ]
    header = machine_lines(args.threads, watch, command_line("bench.flip_ensemble", argv))
    path = write_markdown(args.out_dir, NAME, "Flip ensemble: quality and cost", header, body)
    return Report(NAME, path, [headline])


if __name__ == "__main__":
    main()
