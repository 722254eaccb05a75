"""Flat probe: which flat regions make the model paint stains (issue 30, "find the cause first").

Drawn inputs, so the table may be published: a flat sky (level L, faint sensor noise) over a
drawn city, restored under every prompt. Two knobs, one per suspected cause: the sky's level
(near-white skies are where `clip(target + rain)` composites hid the rain: if the model learned
that, it paints there) and the sky's height (a flat region larger than the receptive field
gives the network no context: if that matters, tall skies stain and short ones don't). Per
case: the blotch measure (`training.metrics.flat_structure`) on the sky, the sky's mean change
and its darkest 32-px block's change (grey levels; negative = darker).

Then the photos training draws from against the clear photos, for the third suspect (training
crops with few large flat bright areas): the share of each photo that is flat (as the blotch
measure defines it) and how many photos have a large bright flat region.

Run: python -m bench.flat_probe [--checkpoint W] [--data ../shared/data] [--quick]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import (
    BUNDLE_WEIGHTS,
    DEFAULT_BUNDLE,
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

NAME = "flat_probe"
NO_PROMPT = "no prompt"
WIDTH, HEIGHT = 512, 384
LEVELS = (0.3, 0.5, 0.6, 0.7, 0.85, 0.95, 1.0)  # sky level, 0..1
SKY_ROWS = (64, 288)  # a short sky and a tall one (a sixth and three quarters of the image)
BLOCK = 32
PHOTO_SETS = {  # under --data: what stage 1 trains on, and the clear photos it fails on
    "clean (synthetic weather's photos)": "clean",
    "rgbd-indoor (depth haze's photos)": "rgbd-indoor/image",
    "weather-photos/clear": "weather-photos/clear",
}
LARGE_FLAT = 0.25  # share of a photo
BRIGHT = 180.0  # Y (16..235): a bright sky or cloud
NOISE = 1.0 / 255  # sensor noise on the sky, as a JPEG sky has


def probe_image(level: float, sky_rows: int, seed: int = 0) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8: a flat sky of `level` over the drawn city scene."""
    from training.scenes import draw_city_scene, to_uint8

    rng = np.random.default_rng(seed)
    image = draw_city_scene(HEIGHT, WIDTH, seed=seed, noise=0.02).astype(np.float64)
    sky = level + rng.normal(0, NOISE, (sky_rows, WIDTH, 1))
    image[:sky_rows] = np.clip(sky, 0, 1)
    return to_uint8(image.astype(np.float32))


def unprompted(model, x) -> np.ndarray:
    """The output under a zero prompt vector, as uint8 HxWx3: the backbone alone for a stage-1
    checkpoint (its prompt levels are identity), backbone and task-general prompt factors after stage 2."""
    import torch

    from training.metrics import quantize

    with torch.no_grad():
        pred = model(x, x.new_zeros(1, model.prompt_dim))
    return quantize(pred[0].clamp(0, 1).permute(1, 2, 0).numpy())


def sky_change(lq: np.ndarray, pred: np.ndarray, sky_rows: int) -> tuple[float, float]:
    """(mean change, darkest block's mean change) of the sky's luma, in grey levels."""
    from training.metrics import rgb_to_y

    diff = (rgb_to_y(pred) - rgb_to_y(lq))[: sky_rows - sky_rows % BLOCK, : WIDTH - WIDTH % BLOCK]
    blocks = diff.reshape(diff.shape[0] // BLOCK, BLOCK, -1, BLOCK).mean(axis=(1, 3))
    return float(diff.mean()), float(blocks.min())


def photo_rows(data: Path, limit: int) -> list[list[str]]:
    """Per photo set: N, median flat share, photos >= LARGE_FLAT flat, photos >= LARGE_FLAT bright and flat."""
    from training.image_files import list_images, read_rgb
    from training.metrics import flat_mask

    rows = []
    for label, folder in PHOTO_SETS.items():
        paths = list_images(data / folder)
        paths = paths[:: max(1, len(paths) // limit)] if limit else paths
        flat, bright = [], []
        for path in paths:
            mask, y = flat_mask(read_rgb(path))
            flat.append(mask.mean())
            bright.append((mask & (y >= BRIGHT)).mean())
        n = len(paths)
        large = sum(f >= LARGE_FLAT for f in flat)
        large_bright = sum(b >= LARGE_FLAT for b in bright)
        rows.append(
            [
                label,
                str(n),
                f"{np.median(flat):.2f}",
                f"{large} ({large / n:.0%})",
                f"{large_bright} ({large_bright / n:.0%})",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.flat_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_BUNDLE / BUNDLE_WEIGHTS)
    parser.add_argument("--quick", action="store_true", help="two levels, the tall sky only, 40 photos per set")
    parser.add_argument(
        "--data", type=Path, default=SHARED_DATA, help="folder with clean/, rgbd-indoor/, weather-photos/"
    )
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from model.checkpoint import load_model
    from training.datasets import to_tensor
    from training.metrics import flat_structure
    from training.real_photos import restore_with

    torch.set_num_threads(args.threads)
    watch = CpuWatch()
    model = load_model(args.checkpoint)[0].eval()
    levels = (LEVELS[0], LEVELS[-1]) if args.quick else LEVELS
    heights = SKY_ROWS[-1:] if args.quick else SKY_ROWS
    rows, worst = [], (0.0, "")
    for sky_rows in heights:
        for level in levels:
            lq = probe_image(level, sky_rows)
            x = to_tensor(lq)[None]
            cells = []
            for task in (NO_PROMPT, *model.tasks):
                pred = unprompted(model, x) if task == NO_PROMPT else restore_with(model, x, {task: 1.0})
                score = flat_structure(lq[:sky_rows], pred[:sky_rows]).score  # the sky alone
                mean, darkest = sky_change(lq, pred, sky_rows)
                cells.append(f"{score:.2f} / {mean:+.1f} / {darkest:+.1f}")
                worst = max(worst, (score, f"{task} on a {sky_rows}-row sky at {level:g}"))
            rows.append([str(sky_rows), f"{level:g}", *cells])
    header = machine_lines(args.threads, watch, command_line("bench.flat_probe", argv))
    header.append(f"- Checkpoint: `{args.checkpoint}`; inputs {WIDTH}x{HEIGHT}, drawn (training.scenes)")
    body = [
        "Per prompt, on the sky: blotch (1 = nothing added) / mean change / darkest 32-px block's change "
        "(grey levels of Y, negative = darker).",
        "",
        md_table(["sky rows", "sky level", NO_PROMPT, *model.tasks], rows),
        "",
        f"## Flat regions in the photos (flat: as the blotch measure defines it; bright: Y >= {BRIGHT:g})",
        "",
        md_table(
            ["photos", "N", "median flat share", f">= {LARGE_FLAT:.0%} flat", f">= {LARGE_FLAT:.0%} bright and flat"],
            photo_rows(args.data, 40 if args.quick else 0),
        ),
    ]
    path = write_markdown(args.out_dir, NAME, "Flat probe: stains on drawn flat skies", header, body)
    return Report(NAME, path, [f"worst blotch {worst[0]:.2f}: {worst[1]}"])


if __name__ == "__main__":
    main()
