"""Tiled vs whole: does restoring a photo in tiles give what restoring it whole gives?

The service cuts photos larger than a tile into overlapping tiles on the backbone's 16-px grid
and blends them (`service.tiling`); a network with any global operation (architecture 1's
channel attention takes a mean over the whole input) sees different statistics per tile and
the tiles disagree. Measured here as PSNR between the tiled and the whole restoration, through
the service's own engine (onnxruntime, CPU), for every weather prompt, on drawn 1-3 MP scenes
and, where ../shared/data/real exists, on real photos of 1-3 MP (numbers only; the photos are
never written out). Target: >= 40 dB at the service's default tile and overlap.

Run: python -m bench.tile_consistency [--quick] [--bundle B ...] [--overlaps 16,32,64]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import (
    DEFAULT_BUNDLE,
    RESULTS,
    SHARED_DATA,
    CpuWatch,
    Report,
    command_line,
    machine_lines,
    md_table,
    plot_path,
    save_figure,
    service_engine,
    write_markdown,
)
from service import tiling
from service.settings import Settings
from training.scenes import draw_city_scene

NAME = "tile_consistency"
TARGET_DB = 40.0
SCENE_SIZES = ((720, 1280), (1080, 1620), (1200, 2400))  # 0.9, 1.7, 2.9 MP
REAL_MIN_PIXELS, REAL_MAX_PIXELS = 1_000_000, 3_200_000


def agreement_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, peak 1) between two restorations in 0..1; inf when identical."""
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def restore_whole(engine, chw: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    return engine.run_backbone(chw[None], prompt[None])[0]


def restore_tiled(engine, chw: np.ndarray, prompt: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """As the service does it: split on the stride grid, run each tile, raised-cosine blend."""
    align = engine.pad_multiple
    parts, boxes = tiling.split(chw, tile, overlap, align)
    outs = [engine.run_backbone(np.ascontiguousarray(p)[None], prompt[None])[0] for p in parts]
    return tiling.untile(outs, boxes, chw.shape[1], chw.shape[2], overlap)


def photos(quick: bool) -> list[tuple[str, np.ndarray]]:
    """(name, (3, H, W) float32) test images: drawn scenes, then real photos of 1-3 MP if present."""
    sizes = SCENE_SIZES[:1] if quick else SCENE_SIZES
    found = [(f"scene {w}x{h}", draw_city_scene(h, w, seed=i)) for i, (h, w) in enumerate(sizes)]
    real = SHARED_DATA / "real"
    if real.is_dir():
        from PIL import Image

        for path in sorted(real.glob("*/*")):
            with Image.open(path) as img:
                if REAL_MIN_PIXELS <= img.width * img.height <= REAL_MAX_PIXELS:
                    found.append((f"real {path.parent.name}/{path.name}", np.asarray(img.convert("RGB")) / 255.0))
            if quick and len(found) >= 2:
                break
    return [(name, np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)) for name, img in found]


def measure(bundle: Path, tile: int, overlaps: list[int], images, threads: int) -> dict:
    """{overlap: {task: [dB per image]}} for one bundle."""
    engine = service_engine(bundle, threads)
    results: dict[int, dict[str, list[float]]] = {ov: {} for ov in overlaps}
    for name, chw in images:
        for task, prompt in sorted(engine.prompts.items()):
            whole = restore_whole(engine, chw, prompt)
            for ov in overlaps:
                db = agreement_db(restore_tiled(engine, chw, prompt, tile, ov), whole)
                results[ov].setdefault(task, []).append(db)
                print(f"{bundle.name} {name} {task} overlap {ov}: {db:.1f} dB", flush=True)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tile_consistency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one scene, one real photo")
    parser.add_argument("--bundle", type=Path, action="append", help="bundle(s) to compare (default artifacts/default)")
    parser.add_argument("--tile", type=int, default=Settings().tile_size)
    parser.add_argument("--overlaps", default=f"{Settings().tile_overlap // 2},{Settings().tile_overlap}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    bundles = args.bundle or [DEFAULT_BUNDLE]
    overlaps = [int(v) for v in args.overlaps.split(",")]
    default_overlap = Settings().tile_overlap
    watch = CpuWatch()
    images = photos(args.quick)
    from contract.bundle import read_manifest

    per_bundle = {b: measure(b, args.tile, overlaps, images, args.threads) for b in bundles}
    rows, headlines = [], []
    for bundle, results in per_bundle.items():
        version = read_manifest(bundle)["model_version"]
        for ov in overlaps:
            worst = {task: min(v) for task, v in results[ov].items()}
            cells = [f"{worst[t]:.1f}" for t in sorted(worst)]
            rows.append([version, str(ov), *cells, f"{min(worst.values()):.1f}"])
        low = min(min(v) for v in results[default_overlap].values()) if default_overlap in results else None
        if low is not None:
            verdict = "met" if low >= TARGET_DB else "**not met**"
            headlines.append(
                f"{version}: tiled vs whole >= {low:.1f} dB at tile {args.tile}, overlap {default_overlap} "
                f"(target {TARGET_DB:.0f}: {verdict})"
            )
    tasks = sorted(next(iter(next(iter(per_bundle.values())).values())))
    figure = plot_path(args.out_dir, NAME)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for bundle, results in per_bundle.items():
        ax.plot(overlaps, [min(min(v) for v in results[ov].values()) for ov in overlaps], "o-", label=bundle.name)
    ax.axhline(TARGET_DB, color="grey", linestyle="--", label=f"target {TARGET_DB:.0f} dB")
    ax.set(xlabel=f"tile overlap (px), tile {args.tile}", ylabel="worst PSNR tiled vs whole (dB)")
    ax.set_title("Tiled vs whole restoration, worst over photos and weathers")
    ax.legend()
    save_figure(fig, figure)
    body = [
        f"Images: {', '.join(name for name, _ in images)}. Tile {args.tile}; cells are the worst PSNR (dB) over "
        "the images for each weather prompt.",
        "",
        md_table(["model", "overlap", *tasks, "worst"], rows),
        "",
        *(f"**{h}.**" for h in headlines),
        "",
        f"![tiled vs whole]({figure.name})",
    ]
    header = machine_lines(args.threads, watch, command_line("bench.tile_consistency", argv))
    path = write_markdown(args.out_dir, NAME, "Tiled vs whole restoration", header, body)
    return Report(NAME, path, headlines)


if __name__ == "__main__":
    main()
