"""Flat-region guard: what it costs next to the backbone, and how it grows with the photo.

The guard (contract.flat_guard) runs after the tiles are blended, on the whole photo, in numpy.
Measured here on drawn photos with a flat sky over a city (the guard's worst case: its mask is
non-zero, so every full-resolution band is computed), interleaved with the service engine's
backbone on the same 1-MP photo in the same run, one thread each.

Run: python -m bench.flat_guard [--bundle artifacts/default] [--repeats 5]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import (
    DEFAULT_BUNDLE,
    RESULTS,
    CpuWatch,
    command_line,
    first_prompt,
    interleaved,
    machine_lines,
    md_table,
    median,
    paired_ratio,
    parse_size,
    service_engine,
    write_markdown,
)
from contract.flat_guard import FlatGuard

NAME = "flat_guard"
SIZES = "1152x864,640x480,3000x2000,4000x3000"  # the first is also restored by the backbone


def sky_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float32 0..1: the drawn city with its top 40 % a flat sky (faint noise)."""
    from training.scenes import draw_city_scene

    rng = np.random.default_rng(seed)
    image = draw_city_scene(height, width, seed=seed, noise=0.02).astype(np.float32)
    sky = int(0.4 * height)
    image[:sky] = 0.7 + rng.normal(0, 1 / 255, (sky, width, 1)).astype(np.float32)
    return np.clip(image, 0, 1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--sizes", default=SIZES, help="comma-separated WxH; the backbone restores the first")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    watch = CpuWatch()
    engine = service_engine(args.bundle, threads=1)
    prompt = first_prompt(args.bundle)[None]
    guard = FlatGuard()
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    photos = {size: sky_photo(*size) for size in sizes}
    restored = {size: np.clip(p * 0.92 + 0.02, 0, 1).astype(np.float32) for size, p in photos.items()}
    first = photos[sizes[0]].transpose(2, 0, 1)[None]

    runs = {"backbone": lambda: engine.run_backbone(first, prompt)}
    runs |= {f"guard {h}x{w}": (lambda s: lambda: guard.apply(photos[s], restored[s]))((h, w)) for h, w in sizes}
    times = interleaved(runs, args.repeats, min_repeats=min(3, args.repeats))

    backbone = times["backbone"]
    h0, w0 = sizes[0]
    rows = [["backbone (service engine, whole photo)", f"{w0}x{h0}", f"{median(backbone):.3f}", "–", "–"]]
    for h, w in sizes:
        t = times[f"guard {h}x{w}"]
        ratio = f"{paired_ratio(t, backbone):.3f}" if (h, w) == sizes[0] else "–"
        rows.append(["flat-region guard", f"{w}x{h}", f"{median(t):.3f}", f"{median(t) * 1e6 / (h * w):.3f}", ratio])
    body = [
        f"Drawn photos, the top 40 % a flat sky; bundle `{args.bundle}`; {len(backbone)} interleaved rounds, "
        "medians; ratio = per-round median of guard / backbone on the same (first) photo.",
        "",
        md_table(["step", "photo", "s", "s per MP", "vs backbone"], rows, "llrrr"),
    ]
    header = machine_lines(1, watch, command_line("bench.flat_guard", argv))
    write_markdown(args.out_dir, NAME, "Flat-region guard: cost", header, body)


if __name__ == "__main__":
    main()
