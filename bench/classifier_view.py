"""What auto mode's patch view costs: the service's `Engine.classify` with the bundle's view vs the
same classifier shown the whole photo shrunk to 768 px (the view of bundles up to .6).

Photos of 0.3 to 12 MP (drawn scenes). Both views run round-robin on the same photo; the table
gives medians and the median per-round ratio, and the time of restoring the 1-MP photo (the
service's tiles, one batch) for scale. Auto-mode accuracy is `tap-train evaluate`'s business.

Run: python -m bench.classifier_view [--quick] [--bundle artifacts/default]
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import (
    CpuWatch,
    Report,
    command_line,
    interleaved,
    machine_lines,
    md_table,
    median,
    paired_ratio,
    service_engine,
    write_markdown,
)
from contract.classifier_view import LONGER_SIDE, ClassifierView
from service import tiling
from training.scenes import draw_city_scene

NAME = "classifier_view"
RESULTS = Path("bench/results")
DEFAULT_BUNDLE = Path("artifacts/default")
SIZES = {"0.3 MP": (480, 640), "1 MP": (864, 1152), "3 MP": (1500, 2000), "12 MP": (3000, 4000)}
QUICK_SIZES = ("0.3 MP", "1 MP")
BASELINE = {"classifier_view": LONGER_SIDE, "classifier_input_size": 768}


def whole_photo_bundle(bundle: Path, folder: Path) -> Path:
    """A copy of `bundle` whose manifest shows the classifier the whole photo (768 px)."""
    copy = Path(shutil.copytree(bundle, folder / "whole"))
    manifest = json.loads((copy / "manifest.json").read_text()) | BASELINE
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def restore_seconds(engine, photo: np.ndarray) -> float:
    """Median time of the backbone over the photo's tiles, `max_batch` tiles per run (split not timed)."""
    s = engine.settings
    chw = np.ascontiguousarray(photo.transpose(2, 0, 1))
    tiles, _ = tiling.split(chw, s.tile_size, s.tile_overlap, engine.pad_multiple)
    batches = [np.stack(tiles[i : i + s.max_batch]) for i in range(0, len(tiles), s.max_batch)]
    prompt = next(iter(engine.prompts.values()))[None]

    def run() -> None:
        for batch in batches:
            engine.run_backbone(batch, np.repeat(prompt, len(batch), 0))

    return median(interleaved({"restore": run}, 3, min_repeats=2)["restore"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.classifier_view", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smaller photos only")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    watch = CpuWatch()
    sizes = QUICK_SIZES if args.quick else tuple(SIZES)
    with tempfile.TemporaryDirectory() as tmp:
        served = service_engine(args.bundle, args.threads)
        whole = service_engine(whole_photo_bundle(args.bundle, Path(tmp)), args.threads)
        view: ClassifierView = served.classifier_view
        rows, ratios = [], {}
        for label in sizes:
            photo = draw_city_scene(*SIZES[label], seed=1)
            times = interleaved(
                {"served": lambda p=photo: served.classify(p), "whole": lambda p=photo: whole.classify(p)},
                args.repeats,
            )
            ratios[label] = paired_ratio(times["served"], times["whole"])
            n_views = len(view.boxes(*view.shape(*photo.shape[:2])))
            rows.append(
                [
                    label,
                    str(n_views),
                    f"{median(times['served']) * 1e3:.1f}",
                    f"{median(times['whole']) * 1e3:.1f}",
                    f"{ratios[label]:.2f}×",
                ]
            )
            print(rows[-1], flush=True)
        restore_ms = restore_seconds(served, draw_city_scene(*SIZES["1 MP"], seed=1)) * 1e3
    header = machine_lines(args.threads, watch, command_line("bench.classifier_view", argv))
    table = md_table(["photo", "views", "bundle's view (ms)", "whole photo, 768 px (ms)", "ratio"], rows, "lrrrr")
    body = [
        f"Bundle `{args.bundle}`: view `{view.mode}`, {view.size} px, photos shrunk to {view.max_side} px first. "
        "Times are `Engine.classify` (resize, cut, onnxruntime, pooling), medians of round-robin repeats; "
        "the ratio is the median of per-round ratios.",
        "",
        table,
        "",
        f"For scale: restoring the 1-MP photo (the backbone over the service's tiles) takes {restore_ms:.0f} ms.",
    ]
    path = write_markdown(args.out_dir, NAME, "Auto mode's classifier view: cost", header, body)
    worst = max(ratios.values())
    headlines = [f"patch view costs up to {worst:.2f}× the whole-photo view's classify time"]
    return Report(NAME, path, headlines)


if __name__ == "__main__":
    main()
