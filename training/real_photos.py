"""Real weather photos without ground truth: auto-mode accuracy and the stride-grid score.

A folder of real photos has one subfolder per weather (`rain/`, `snow/`, ...; `clean/` too):
the folder name is the label. Auto mode decides as the service does (`contract.auto_rule`, with
the checkpoint's calibrated rule), so a mixture that contains the labelled weather counts as right. The grid
score (`training.metrics.grid_score`) is measured on the input and on both outputs (the
labelled weather's prompt, and auto mode's decision), at full resolution unless `size` is set.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contract.flat_guard import FlatGuard
from model.net import CLEAN_CLASS, TAPNet
from training.datasets import DataError, list_images, read_rgb, to_tensor
from training.image_files import fit_longer_side
from training.metrics import grid_score, quantize

log = logging.getLogger(__name__)

OUTPUTS = ("input", "given task", "auto")
PREVIEW_SIDE = 640  # side-by-side previews for looking at by eye (never published: they show the photos)


@dataclass(frozen=True)
class RealPhoto:
    label: str
    path: Path
    decision: str  # auto mode's label: a task, `clean` or `a+b`
    hit: bool
    grid: dict[str, float]  # OUTPUTS -> grid score


def real_folders(root: Path, classes: list[str]) -> dict[str, list[Path]]:
    """Subfolders of `root` named after a class -> their photos; other subfolders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"real-photo folder not found: {root}")
    found = {d.name: list_images(d) for d in sorted(root.iterdir()) if d.is_dir() and d.name in classes}
    if not found:
        raise DataError(f"{root} has no subfolder named after a class ({', '.join(classes)})")
    return found


@torch.no_grad()
def auto_decision(model: TAPNet, x: torch.Tensor) -> tuple[str, dict[str, float]]:
    """The service's auto-mode decision for one (1, 3, H, W) image: (label, prompt weights)."""
    probs = model.photo_probabilities(x).tolist()
    decision = model.cfg.auto_rule.decide(dict(zip(model.classes, probs, strict=True)), model.tasks)
    return decision.label, decision.weights


@torch.no_grad()
def restore_with(
    model: TAPNet, x: torch.Tensor, weights: dict[str, float], guard: FlatGuard | None = None
) -> np.ndarray:
    """Output under a weighted mixture of task prompts (empty weights: the input untouched),
    through the service's flat-region guard when one is given."""
    photo = x[0].permute(1, 2, 0).cpu().numpy()
    if not weights:
        return quantize(photo)
    vectors = model.prompt_for(list(weights))
    prompt = (torch.tensor(list(weights.values()), dtype=vectors.dtype)[:, None] * vectors).sum(0, keepdim=True)
    pred = model(x, prompt)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return quantize(pred if guard is None else guard.apply(photo, pred))


def save_preview(path: Path, panels: list[np.ndarray]) -> None:
    """Input | outputs side by side, longer side of each panel at most PREVIEW_SIDE."""
    small = [fit_longer_side(p, PREVIEW_SIDE) for p in panels]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(small, axis=1)).save(path)


def evaluate_real(
    model: TAPNet, root: Path, size: int = 0, preview_dir: Path | None = None, guard: FlatGuard | None = None
) -> dict:
    """Auto-mode accuracy and grid scores per folder and over all photos."""
    model.eval()
    device = next(model.parameters()).device
    photos: list[RealPhoto] = []
    for label, paths in real_folders(root, model.classes).items():
        for path in paths:
            rgb = fit_longer_side(read_rgb(path), size)
            x = to_tensor(rgb)[None].to(device)
            decision, weights = auto_decision(model, x)
            given = rgb if label == CLEAN_CLASS else restore_with(model, x, {label: 1.0}, guard)
            auto = given if weights == {label: 1.0} else restore_with(model, x, weights, guard)
            hit = (decision == CLEAN_CLASS) if label == CLEAN_CLASS else label in weights
            scores = {name: grid_score(img) for name, img in zip(OUTPUTS, (rgb, given, auto), strict=True)}
            photos.append(RealPhoto(label, path, decision, hit, scores))
            if preview_dir is not None:
                save_preview(Path(preview_dir) / label / f"{path.stem}.png", [rgb, given, auto])
    log.info("real photos: %d evaluated", len(photos))
    return summarize(photos)


@torch.no_grad()
def clean_untouched(model: TAPNet, paths: list[Path], size: int = 0) -> dict:
    """Whole clean photos through auto mode's rule: how many the service would return untouched."""
    model.eval()
    device = next(model.parameters()).device
    decisions: dict[str, int] = {}
    for path in paths:
        x = to_tensor(fit_longer_side(read_rgb(path), size))[None].to(device)
        label, _ = auto_decision(model, x)
        decisions[label] = decisions.get(label, 0) + 1
    return {"n": len(paths), "untouched": decisions.get(CLEAN_CLASS, 0), "decisions": decisions}


def grid_stats(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "worst": float(np.max(values))}


def summarize(photos: list[RealPhoto]) -> dict:
    labels = sorted({p.label for p in photos})
    folders = {}
    for label in labels:
        group = [p for p in photos if p.label == label]
        decisions: dict[str, int] = {}
        for p in group:
            decisions[p.decision] = decisions.get(p.decision, 0) + 1
        folders[label] = {
            "n": len(group),
            "auto_accuracy": sum(p.hit for p in group) / len(group),
            "decisions": decisions,
            "grid": {name: grid_stats([p.grid[name] for p in group]) for name in OUTPUTS},
            "photos": {p.path.name: {"decision": p.decision, "grid": p.grid} for p in group},
        }
    return {
        "n": len(photos),
        "auto_accuracy": sum(p.hit for p in photos) / len(photos),
        "grid": {name: grid_stats([p.grid[name] for p in photos]) for name in OUTPUTS},
        "folders": folders,
    }


def format_real(real: dict) -> list[str]:
    """Markdown lines for the report."""
    lines = [
        "## Real photos (no ground truth)",
        "",
        f"{real['n']} photos; auto mode as the service decides (a mixture containing the folder's weather counts). "
        "Grid score: power at the harmonics of 1/16 over nearby frequencies (1.0 = no stride pattern).",
        "",
        "| folder | N | auto accuracy | auto decisions | grid input (median / worst) | grid given task | grid auto |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    rows = [*real["folders"].items(), ("all", real)]
    for name, d in rows:
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(d.get("decisions", {}).items())) or "-"
        grids = [f"{d['grid'][o]['median']:.3f} / {d['grid'][o]['worst']:.3f}" for o in OUTPUTS]
        lines.append(f"| {name} | {d['n']} | {d['auto_accuracy']:.3f} | {decisions} | " + " | ".join(grids) + " |")
    clean = real.get("held_out_clean")
    if clean:
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(clean["decisions"].items()))
        lines += [
            "",
            f"Held-out clean photos (whole, the service's rule): {clean['untouched']} of {clean['n']} returned "
            f"untouched ({decisions}).",
        ]
    return lines
