"""Validation of a checkpoint: restoration quality per task and method, auto-mode confusion.

Methods per image: the input itself (context), the model under the true task's prompt
("given task"), auto mode as the service runs it (classifier on the whole image -> argmax;
`clean` returns the input untouched), and for haze the dark channel prior. Sources: synthetic
weather on held-out clean photos (deterministic in the seed) and paired folders. Writes
report.md, metrics.json and grid.png.
"""

import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from contract.flat_guard import FlatGuard
from model.net import TAPNet
from training import synth
from training.baselines import dark_channel_prior
from training.datasets import DataError, PairedFolder, list_images, read_rgb, split_clean, to_tensor
from training.image_files import fit_longer_side
from training.metrics import image_metrics, quantize
from training.no_harm import evaluate_no_harm, format_no_harm
from training.real_photos import clean_untouched, evaluate_real, format_real
from training.synth.assets import StreakBank

log = logging.getLogger(__name__)

SYNTH_CROP = 256  # synthetic validation uses a centre crop of each held-out photo, up to this square
SEVERITY_RANGE = (0.1, 1.0)  # spread evenly over a task's images, light to heavy
HAZE = "haze"  # the task that gets the dark-channel-prior baseline row
METHODS = ("input", "given task", "auto", "dark channel prior")
METRICS = ("psnr_y", "ssim_y", "psnr_rgb")
GRID_PER_DATASET = 2
GRID_TILE = 192  # longest side of a grid tile before any shrinking to fit GRID_MAX_BYTES
GRID_MAX_BYTES = 2_000_000
GRID_COLUMNS = ("input", "given task", "auto", "ground truth")
PAD, HEADER, LABEL = 4, 16, 14  # grid spacing, column-header and row-label heights (pixels)


@dataclass(frozen=True)
class Sample:
    name: str
    lq: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W, 3) uint8
    task: int  # index into model.classes; len(model.tasks) is `clean`


@dataclass
class Source:
    """One row group of the report: a synthetic task or a paired folder."""

    name: str
    task: int
    origin: str  # "synthetic" or the folder path
    samples: Iterable[Sample]


@dataclass
class GridRow:
    label: str
    tiles: list[np.ndarray]  # uint8 thumbnails, GRID_COLUMNS order


def center_crop(image: np.ndarray, crop: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - min(h, crop)) // 2, (w - min(w, crop)) // 2
    return image[top : top + crop, left : left + crop]


def held_out_photos(
    clean_dir: Path, crop: int = SYNTH_CROP, size: int = 0, holdout_every: int = 11
) -> list[np.ndarray]:
    """Centre crops of the clean photos that training held out (`held_out_files`)."""
    files = held_out_files(clean_dir, holdout_every)
    return [fit_longer_side(np.ascontiguousarray(center_crop(read_rgb(f), crop)), size) for f in files]


def held_out_files(clean_dir: Path, holdout_every: int = 11) -> list[Path]:
    """The clean photos training held out (the val split of `split_clean`); `holdout_every` must be
    the trained model's own `data.holdout_every`."""
    return split_clean(list_images(Path(clean_dir)), holdout_every, "val")


def synthetic_samples(
    photos: list[np.ndarray],
    task: int,
    task_name: str,
    count: int,
    seed: int,
    generators: Mapping[str, synth.WeatherFn] = synth.GENERATORS,
) -> list[Sample]:
    """`count` degraded photos for one task, severities spread light to heavy; same seed, same images.
    `generators`: data engine v1's by default (the numbers every report since the first compares)."""
    lo, hi = SEVERITY_RANGE
    samples = []
    for k in range(count):
        gt = photos[k % len(photos)]
        rng = np.random.default_rng([seed, task, k])
        severity = lo + (hi - lo) * (k + 0.5) / count
        lq = quantize(synth.apply(task_name, gt.astype(np.float32) / 255.0, rng, severity, generators))
        samples.append(Sample(f"#{k}", lq, gt, task))
    return samples


def paired_samples(root: Path, task: int, size: int) -> Iterator[Sample]:
    """Whole image pairs of a folder, read one at a time (PairedFolder checks names and sizes)."""
    folder = PairedFolder(root, task)
    for i in range(len(folder)):
        item = folder[i]
        lq, gt = (quantize(item[k].permute(1, 2, 0).numpy()) for k in ("lq", "gt"))
        yield Sample(item["name"], fit_longer_side(lq, size), fit_longer_side(gt, size), task)


def _tensor(image: np.ndarray, model: TAPNet) -> torch.Tensor:
    return to_tensor(image)[None].to(next(model.parameters()).device)


@torch.no_grad()
def restore(model: TAPNet, lq: np.ndarray, task: int, guard: FlatGuard | None = None) -> np.ndarray:
    """Model output under one task's prompt, as a uint8 image (through `guard` when given)."""
    pred = model(_tensor(lq, model), model.prompt_for([model.tasks[task]]))[0].permute(1, 2, 0).cpu().numpy()
    return quantize(pred if guard is None else guard.apply(lq.astype(np.float32) / 255.0, pred))


@torch.no_grad()
def auto_class(model: TAPNet, image: np.ndarray) -> int:
    """Auto mode's decision for a whole image: argmax over tasks + `clean`."""
    return int(model.photo_probabilities(_tensor(image, model)).argmax())


def run_methods(model: TAPNet, sample: Sample, guard: FlatGuard | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Every method's output for one image, and the class auto mode picked."""
    given = restore(model, sample.lq, sample.task, guard)
    predicted = auto_class(model, sample.lq)
    if predicted == len(model.tasks):
        auto = sample.lq
    else:
        auto = given if predicted == sample.task else restore(model, sample.lq, predicted, guard)
    outputs = {"input": sample.lq, "given task": given, "auto": auto}
    if model.tasks[sample.task] == HAZE:
        outputs["dark channel prior"] = quantize(dark_channel_prior(sample.lq))
    return outputs, predicted


def evaluate_source(model: TAPNet, source: Source, grid: list[GridRow], guard: FlatGuard | None = None) -> dict:
    """Mean metrics per method and auto-mode prediction counts over one source; adds grid rows."""
    scores: dict[str, list[dict[str, float]]] = {}
    predictions = [0] * len(model.classes)
    start = time.perf_counter()
    for i, sample in enumerate(source.samples):
        outputs, predicted = run_methods(model, sample, guard)
        predictions[predicted] += 1
        for method, pred in outputs.items():
            scores.setdefault(method, []).append(image_metrics(pred, sample.gt))
        if i < GRID_PER_DATASET:
            label = f"{source.name} {sample.name}  auto: {model.classes[predicted]}"
            tiles = [outputs["input"], outputs["given task"], outputs["auto"], sample.gt]
            grid.append(GridRow(label, [fit_longer_side(t, GRID_TILE) for t in tiles]))
    if not scores:
        raise ValueError(f"{source.name}: no images to evaluate")
    methods = {
        m: {**{k: float(np.mean([s[k] for s in scores[m]])) for k in METRICS}, "n": len(scores[m])}
        for m in METHODS
        if m in scores
    }
    log.info("%s: %d images in %.1f s", source.name, len(scores["input"]), time.perf_counter() - start)
    return {
        "task": model.tasks[source.task],
        "source": source.origin,
        "methods": methods,
        "auto_predictions": dict(zip(model.classes, predictions, strict=True)),
    }


def auto_summary(model: TAPNet, datasets: dict[str, dict], synthetic: list[str], clean: list[np.ndarray]) -> dict:
    """Confusion matrix (true class x predicted class) on synthetic validation + held-out clean photos."""
    classes = model.classes
    confusion = [[0] * len(classes) for _ in classes]
    for name in synthetic:
        row = classes.index(datasets[name]["task"])
        confusion[row] = [datasets[name]["auto_predictions"][c] for c in classes]
    clean_row = len(classes) - 1
    for photo in clean:
        confusion[clean_row][auto_class(model, photo)] += 1
    weather_n = sum(sum(row) for row in confusion[:clean_row])
    weather_hits = sum(confusion[i][i] for i in range(clean_row))
    clean_n, clean_hits = len(clean), confusion[clean_row][clean_row]

    def share(hits: int, n: int) -> float | None:
        return hits / n if n else None

    return {
        "classes": classes,
        "confusion": confusion,
        "accuracy_weather": share(weather_hits, weather_n),
        "accuracy_clean": share(clean_hits, clean_n),
        "accuracy": share(weather_hits + clean_hits, weather_n + clean_n),
        "n_weather": weather_n,
        "n_clean": clean_n,
    }


def unique_name(name: str, taken: dict) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}#{k}", k + 1
    return candidate


def run_evaluation(
    model: TAPNet,
    *,
    clean_dir: Path,
    synthetic_per_task: int,
    paired: list[tuple[int, Path]],
    out_dir: Path,
    seed: int = 0,
    size: int = 0,
    holdout_every: int = 11,
    real: Path | None = None,
    no_harm_clear: Path | None = None,
    no_harm_haze: Path | None = None,
    no_harm_rain: Path | None = None,
    synthetic_v2_streaks: Path | None = None,
    flat_guard: FlatGuard | None = None,
) -> dict:
    """Evaluate on synthetic validation, paired folders and real photos; write report.md,
    metrics.json, grid.png (and side-by-side previews of the real photos under real/).
    `no_harm_clear` / `no_harm_haze` / `no_harm_rain`: clear photos, real haze and real rain for the do-no-harm section
    (`training.no_harm`; previews of the worst photos under no_harm/).

    `synthetic_v2_streaks`: also the same photos under data engine v2's weather (what training now
    draws; its rain composites the rendered streak layers of this folder), as `synthetic-v2/<task>`
    rows; they stay out of the auto-mode confusion, which keeps comparing v1.

    `flat_guard`: every restoration goes through it, as the service's does (`contract.flat_guard`);
    None measures the bare network.

    Puts the model in eval mode. Synthetic validation covers the tasks that have a generator;
    `synthetic_per_task=0` skips it and the auto-mode confusion (clean_dir is then not read).
    """
    model.eval()
    out_dir = Path(out_dir)
    sources: list[Source] = []
    clean: list[np.ndarray] = []
    if synthetic_per_task > 0:
        clean = held_out_photos(Path(clean_dir), SYNTH_CROP, size, holdout_every)
        for t, task in enumerate(model.tasks):
            if task not in synth.GENERATORS:
                log.info("no synthetic generator for task %r: synthetic validation skips it", task)
                continue
            samples = synthetic_samples(clean, t, task, synthetic_per_task, seed)
            sources.append(Source(f"synthetic/{task}", t, "synthetic", samples))
        if synthetic_v2_streaks is not None:
            v2 = synth.generators(2, StreakBank.load(Path(synthetic_v2_streaks)))
            for t, task in enumerate(model.tasks):
                if task in v2:
                    samples = synthetic_samples(clean, t, task, synthetic_per_task, seed, v2)
                    sources.append(Source(f"synthetic-v2/{task}", t, "synthetic-v2", samples))
    for task, root in paired:
        sources.append(Source(Path(root).name, task, str(root), paired_samples(Path(root), task, size)))
    no_harm = {"clear_dir": no_harm_clear, "haze_dir": no_harm_haze, "rain_dir": no_harm_rain}
    wants_no_harm = any(v is not None for v in no_harm.values())
    if not sources and real is None and not wants_no_harm:
        raise ValueError(
            "nothing to evaluate: give synthetic_per_task > 0, paired folders, real photos or no-harm folders"
        )

    grid: list[GridRow] = []
    datasets: dict[str, dict] = {}
    synthetic_names = []
    for source in sources:
        name = unique_name(source.name, datasets)
        datasets[name] = evaluate_source(model, source, grid, flat_guard)
        if source.origin == "synthetic":
            synthetic_names.append(name)
    results = {
        "tasks": model.tasks,
        "classes": model.classes,
        "settings": {
            "seed": seed,
            "size": size,
            "synthetic_per_task": synthetic_per_task,
            "synthetic_crop": SYNTH_CROP,
            "held_out_photos": len(clean),
            "holdout_every": holdout_every,
            "flat_guard": dataclasses.asdict(flat_guard) if flat_guard is not None else None,
        },
        "datasets": datasets,
        "auto": auto_summary(model, datasets, synthetic_names, clean) if synthetic_names else None,
        "real": evaluate_real(model, Path(real), size, out_dir / "real", flat_guard) if real is not None else None,
        "no_harm": evaluate_no_harm(model, size=size, preview_dir=out_dir / "no_harm", guard=flat_guard, **no_harm)
        if wants_no_harm
        else None,
    }
    if real is not None:  # and whole held-out clean photos: how many auto mode returns untouched
        try:
            held_out = held_out_files(clean_dir, holdout_every)
        except DataError:
            held_out = []
            log.info("no clean photos in %s: real-photo evaluation without the clean check", clean_dir)
        if held_out:
            results["real"]["held_out_clean"] = clean_untouched(model, held_out, size)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    (out_dir / "report.md").write_text(format_report(results))
    if grid:
        save_grid(grid, out_dir / "grid.png")
    return results


def _table(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(r) + " |" for r in [header, align, *rows]]


def format_report(results: dict) -> str:
    """Markdown: restoration table, auto-mode confusion and accuracy, predictions on paired sets."""
    s = results["settings"]
    resolution = "full resolution" if s["size"] <= 0 else f"longer side at most {s['size']} px"
    lines = [
        "# Evaluation report",
        "",
        f"Tasks: {', '.join(results['tasks'])}. PSNR and SSIM on Y (ITU-R BT.601) of 8-bit images and PSNR on "
        f"RGB, mean over images; images at {resolution}.",
        "Restorations went through the service's flat-region guard (contract.flat_guard)."
        if s.get("flat_guard")
        else "Restorations are the bare network's (no flat-region guard).",
    ]
    if s["synthetic_per_task"] > 0:
        lines.append(
            f"Synthetic validation: {s['synthetic_per_task']} images per task from {s['held_out_photos']} held-out "
            f"clean photos (centre crop up to {s['synthetic_crop']} px, severities {SEVERITY_RANGE[0]}-"
            f"{SEVERITY_RANGE[1]}, seed {s['seed']}); `synthetic/` rows use data engine v1's weather (the "
            "numbers every report compares), `synthetic-v2/` rows (if any) the same photos under v2's, which "
            "training draws."
        )
    lines += ["", "## Restoration", ""]
    rows = [
        [name, d["task"], method, f"{m['psnr_y']:.2f}", f"{m['ssim_y']:.4f}", f"{m['psnr_rgb']:.2f}", str(m["n"])]
        for name, d in results["datasets"].items()
        for method, m in d["methods"].items()
    ]
    lines += _table(["dataset", "task", "method", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "N"], rows, 3)
    lines += ["", "## Auto mode", ""]
    auto = results["auto"]
    if auto is None:
        lines.append("No synthetic validation, so no confusion matrix.")
    else:
        classes = auto["classes"]
        lines.append("Confusion on synthetic validation and held-out clean photos (rows: true, columns: predicted):")
        lines.append("")
        rows = [[c, *map(str, row), str(sum(row))] for c, row in zip(classes, auto["confusion"], strict=True)]
        lines += _table(["true \\ predicted", *classes, "N"], rows, 1)
        lines += ["", "Accuracy: " + "; ".join(_accuracy(auto)) + "."]
    paired = {n: d for n, d in results["datasets"].items() if not d["source"].startswith("synthetic")}
    if paired:
        classes = results["classes"]
        lines += ["", "Auto-mode predictions on paired sets:", ""]
        rows = [[n, d["task"], *(str(d["auto_predictions"][c]) for c in classes)] for n, d in paired.items()]
        lines += _table(["dataset", "task", *classes], rows, 2)
    if results.get("real"):
        lines += ["", *format_real(results["real"])]
    if results.get("no_harm"):
        lines += ["", *format_no_harm(results["no_harm"])]
    lines += [
        "",
        f"grid.png: up to {GRID_PER_DATASET} examples per dataset; columns {', '.join(GRID_COLUMNS)}. "
        "It shows dataset images: keep it out of anything published.",
        "",
    ]
    return "\n".join(lines)


def _accuracy(auto: dict) -> list[str]:
    n_weather, n_clean = auto["n_weather"], auto["n_clean"]
    parts = [
        ("weather images", auto["accuracy_weather"], n_weather),
        ("clean photos", auto["accuracy_clean"], n_clean),
        ("all", auto["accuracy"], n_weather + n_clean),
    ]
    return [f"{label} {acc:.3f} of {n}" for label, acc, n in parts if acc is not None]


def save_grid(rows: list[GridRow], path: Path) -> None:
    """Labelled before/after sheet; shrunk until the PNG is under GRID_MAX_BYTES."""
    cell_h = max(t.shape[0] for r in rows for t in r.tiles)
    cell_w = max(t.shape[1] for r in rows for t in r.tiles)
    width = PAD + len(GRID_COLUMNS) * (cell_w + PAD)
    height = HEADER + len(rows) * (LABEL + cell_h + PAD)
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for col, name in enumerate(GRID_COLUMNS):
        draw.text((PAD + col * (cell_w + PAD), 2), name, fill=(235, 235, 235), font=font)
    for i, row in enumerate(rows):
        top = HEADER + i * (LABEL + cell_h + PAD)
        draw.text((PAD, top), row.label, fill=(200, 200, 200), font=font)
        for col, tile in enumerate(row.tiles):
            sheet.paste(Image.fromarray(tile), (PAD + col * (cell_w + PAD), top + LABEL))
    image = sheet
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= GRID_MAX_BYTES or min(image.size) < 64:
            break
        image = sheet.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.Resampling.LANCZOS)
    path.write_bytes(buffer.getvalue())
