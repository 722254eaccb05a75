"""Do no harm: what the model does to photos that need little or nothing done.

Three sets. Clear photos (the dev split of weather-photos/clear), restored under every prompt
and under auto mode as the service decides: *clean in, clean out* (PSNR of the output against
its own input; nothing to remove, so high is right) and the flat-region (blotch) measure
(`training.metrics.flat_structure`). Real dense haze under the `haze` prompt and real rain under
`rain`: the blotch measure and the change of mean brightness only, since restoring should change
the photo (rain adds light, so some darkening is right; a rain prompt that dehazes darkens far
more). Every set also gets the fine-detail change (`training.metrics.fine_structure_change`):
harm on clear photos, and on real rain, how many of the streaks came out. Previews of the
worst photos (input | output, the worst flat block outlined) go to a folder for looking at by
eye; they show the photos, so they stay out of anything published.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from contract.flat_guard import FlatGuard
from model.net import CLEAN_CLASS, TAPNet
from training.datasets import to_tensor
from training.image_files import fit_longer_side, list_images, read_rgb
from training.metrics import fine_structure_change, flat_structure, psnr, rgb_to_y
from training.real_photos import auto_decision, restore_with
from training.weather_photos import split_files

log = logging.getLogger(__name__)

AUTO = "auto"
HAZE = "haze"
RAIN = "rain"
GROUPS = ("clear", HAZE, RAIN)
WORST_PREVIEWS = 3  # per prompt and measure
PREVIEW_SIDE = 512


@dataclass(frozen=True)
class Outcome:
    """One photo under one prompt."""

    name: str
    psnr_rgb: float  # output vs its own input
    psnr_y: float
    blotch: float | None  # None: the photo has no flat region
    box: tuple[int, int, int, int] | None
    decision: str  # the prompt, or auto mode's label
    brightness: float  # mean Y of the output minus the input's, grey levels (negative = darker)
    fine_change: float  # share of the input's fine detail changed beyond a contrast gain


def judge(name: str, lq: np.ndarray, pred: np.ndarray, decision: str) -> Outcome:
    flat = flat_structure(lq, pred)
    y_in, y_out = rgb_to_y(lq), rgb_to_y(pred)
    change = float(y_out.mean() - y_in.mean())
    fine = fine_structure_change(lq, pred)
    return Outcome(name, psnr(pred, lq), psnr(y_out, y_in), flat.score, flat.box, decision, change, fine)


def psnr_stats(values: list[float]) -> dict[str, float]:
    """Median and worst (lowest) PSNR; an identical output is inf."""
    return {"median": float(np.median(values)), "worst": float(np.min(values))}


def summarize(outcomes: list[Outcome]) -> dict:
    """Median / worst of each measure over one prompt's photos, and which photos were worst."""
    blotches = [o.blotch for o in outcomes if o.blotch is not None]
    worst_psnr = min(outcomes, key=lambda o: o.psnr_rgb)
    worst_blotch = max((o for o in outcomes if o.blotch is not None), key=lambda o: o.blotch, default=None)
    decisions: dict[str, int] = {}
    for o in outcomes:
        decisions[o.decision] = decisions.get(o.decision, 0) + 1
    return {
        "n": len(outcomes),
        "n_flat": len(blotches),
        "psnr_rgb": psnr_stats([o.psnr_rgb for o in outcomes]),
        "psnr_y": psnr_stats([o.psnr_y for o in outcomes]),
        "blotch": {
            "median": float(np.median(blotches)) if blotches else None,
            "worst": float(np.max(blotches)) if blotches else None,
        },
        "brightness": {  # the darkest change is the worst
            "median": float(np.median([o.brightness for o in outcomes])),
            "worst": float(np.min([o.brightness for o in outcomes])),
        },
        "fine_change": {  # median and mean: on real rain, higher is more rain removed
            "median": float(np.median([o.fine_change for o in outcomes])),
            "mean": float(np.mean([o.fine_change for o in outcomes])),
        },
        "worst_psnr_photo": worst_psnr.name,
        "worst_blotch_photo": worst_blotch.name if worst_blotch else None,
        "decisions": decisions,
        "photos": {
            o.name: {
                "psnr_rgb": o.psnr_rgb,
                "psnr_y": o.psnr_y,
                "blotch": o.blotch,
                "brightness": o.brightness,
                "fine_change": o.fine_change,
            }
            for o in outcomes
        },
    }


def save_preview(path: Path, lq: np.ndarray, pred: np.ndarray, box: tuple[int, int, int, int] | None) -> None:
    """Input | output side by side; the worst flat block outlined on the output."""
    panels = []
    for image, outline in ((lq, False), (pred, True)):
        img = Image.fromarray(image)
        if outline and box is not None:
            top, left, bottom, right = box  # a block on the last row or column may round to one pixel
            corners = (left, top, max(left, right - 1), max(top, bottom - 1))
            ImageDraw.Draw(img).rectangle(corners, outline=(255, 0, 255), width=3)
        panels.append(fit_longer_side(np.asarray(img), PREVIEW_SIDE))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def worst(outcomes: list[Outcome]) -> set[str]:
    """Names of the WORST_PREVIEWS lowest-PSNR and highest-blotch photos."""
    by_psnr = sorted(outcomes, key=lambda o: o.psnr_rgb)[:WORST_PREVIEWS]
    by_blotch = sorted((o for o in outcomes if o.blotch is not None), key=lambda o: -o.blotch)[:WORST_PREVIEWS]
    return {o.name for o in by_psnr + by_blotch}


@torch.no_grad()
def run_prompts(
    model: TAPNet,
    paths: list[Path],
    prompts: list[str],
    size: int,
    preview_dir: Path | None,
    guard: FlatGuard | None = None,
) -> dict[str, dict]:
    """Every photo under every prompt (`auto`: the service's decision; clean = the input back)."""
    device = next(model.parameters()).device
    outcomes: dict[str, list[Outcome]] = {p: [] for p in prompts}
    kept: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        lq = fit_longer_side(read_rgb(path), size)
        x = to_tensor(lq)[None].to(device)
        for prompt in prompts:
            if prompt == AUTO:
                decision, weights = auto_decision(model, x)
            else:
                decision, weights = prompt, {prompt: 1.0}
            pred = lq if decision == CLEAN_CLASS else restore_with(model, x, weights, guard)
            outcomes[prompt].append(judge(path.name, lq, pred, decision))
            if preview_dir is not None:
                kept[(prompt, path.name)] = (lq, pred)
        if preview_dir is not None:  # keep only what can still be among the worst
            keep = {(p, n) for p in prompts for n in worst(outcomes[p])}
            kept = {k: v for k, v in kept.items() if k in keep}
    if preview_dir is not None:
        for (prompt, name), (lq, pred) in kept.items():
            box = next(o.box for o in outcomes[prompt] if o.name == name)
            save_preview(Path(preview_dir) / prompt / f"{Path(name).stem}.png", lq, pred, box)
    return {p: summarize(o) for p, o in outcomes.items()}


def evaluate_no_harm(
    model: TAPNet,
    clear_dir: Path | None,
    haze_dir: Path | None,
    rain_dir: Path | None = None,
    size: int = 0,
    preview_dir: Path | None = None,
    guard: FlatGuard | None = None,
) -> dict:
    """Clean in, clean out and the blotch measure on clear photos (dev split, every prompt and
    auto); the blotch measure and brightness change on real haze under `haze` and real rain under
    `rain`. Any folder may be None."""
    model.eval()
    results: dict = {}
    if clear_dir is not None:
        paths = split_files(Path(clear_dir), "dev")
        log.info("no harm: %d clear dev photos x %d prompts", len(paths), len(model.tasks) + 1)
        clear_previews = Path(preview_dir) / "clear" if preview_dir is not None else None
        results["clear"] = {
            "folder": str(clear_dir),
            "prompts": run_prompts(model, paths, [*model.tasks, AUTO], size, clear_previews, guard),
        }
    for group, folder in ((HAZE, haze_dir), (RAIN, rain_dir)):
        if folder is not None and group in model.tasks:
            previews = Path(preview_dir) / group if preview_dir is not None else None
            results[group] = {
                "folder": str(folder),
                "prompts": run_prompts(model, list_images(Path(folder)), [group], size, previews, guard),
            }
    return results


def _cell(d: dict, fmt: str) -> str:
    return "–" if d["median"] is None else f"{d['median']:{fmt}} / {d['worst']:{fmt}}"


def format_no_harm(no_harm: dict) -> list[str]:
    """Markdown lines for the report."""
    lines = [
        "## Do no harm",
        "",
        "Clean in, clean out: PSNR (dB) of the output against its own input. Blotch: structure the output adds "
        "where the input is flat, the global contrast gain divided out (`training.metrics.flat_structure`; "
        "1.0 = none added, worst = highest). Brightness: mean Y of the output minus the input's, grey levels "
        "(worst = darkest). Median / worst over the photos. Fine change: the share of the input's fine detail "
        "the output changed beyond a contrast gain (`training.metrics.fine_structure_change`; median / mean): "
        "harm on clear photos, streaks taken out on real rain.",
        *(
            f"{group}: {no_harm[group]['folder']}"
            + (" (its dev split, `training.weather_photos`)" if group == "clear" else "")
            + "."
            for group in GROUPS
            if group in no_harm
        ),
        "",
        "| photos | prompt | N | PSNR-RGB | PSNR-Y | blotch (N with a flat region) | brightness "
        "| fine change | worst PSNR | worst blotch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for group in GROUPS:
        if group not in no_harm:
            continue
        for prompt, d in no_harm[group]["prompts"].items():
            psnr_cells = [_cell(d["psnr_rgb"], ".2f"), _cell(d["psnr_y"], ".2f")] if group == "clear" else ["–", "–"]
            blotch = f"{_cell(d['blotch'], '.2f')} ({d['n_flat']})"
            brightness = _cell(d["brightness"], "+.1f")
            fine = d.get("fine_change")  # absent from reports written before it existed
            fine_cell = f"{fine['median']:.3f} / {fine['mean']:.3f}" if fine else "–"
            worst_psnr = d["worst_psnr_photo"] if group == "clear" else "–"
            worst_blotch = d["worst_blotch_photo"] or "–"
            row = [group, prompt, str(d["n"]), *psnr_cells, blotch, brightness, fine_cell, worst_psnr, worst_blotch]
            lines.append("| " + " | ".join(row) + " |")
    if "clear" in no_harm:
        auto = no_harm["clear"]["prompts"].get(AUTO)
        if auto:
            decisions = ", ".join(f"{k} {v}" for k, v in sorted(auto["decisions"].items()))
            lines += ["", f"Auto mode on the clear photos: {decisions}."]
    return lines
