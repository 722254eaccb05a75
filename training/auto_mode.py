"""Auto mode on real photos: calibration, the rule's thresholds, and confusion matrices.

Every photo is shown to the classifier as the service shows it (the model's classifier view),
and decided by the rule the service applies (contract.auto_rule). Calibration is temperature
scaling of the photo-level pooled log-probabilities, fitted on the dev split of weather-photos
(training/weather_photos.py) by negative log-likelihood; the rule's thresholds are then chosen
on the same photos so that clear photos come back untouched, the costliest mistake being a
clear photo sent to a prompt.
"""

import itertools
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from contract.auto_rule import AutoRule
from model.encoder import encoder_views
from model.net import CLEAN_CLASS, TAPNet
from training.datasets import read_rgb, to_tensor
from training.evaluate import held_out_photos, synthetic_samples
from training.image_files import list_images
from training.weather_photos import FOLDER_CLASS, decision_is_right, labelled_photos

REAL_FOLDERS = ("rain", "raindrop", "snow", "haze")
CLEAR_UNTOUCHED_MIN = 0.95  # the share of clear dev photos that must come back untouched
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
THRESHOLDS = np.round(np.arange(0.0, 0.96, 0.05), 2)


@dataclass(frozen=True)
class PhotoScore:
    folder: str
    name: str
    label: int  # index of the folder's class in the model's classes
    mean_log_probs: np.ndarray  # (C,) the views' mean log-probabilities, before calibration


@torch.no_grad()
def mean_log_probs(model: TAPNet, rgb: np.ndarray) -> np.ndarray:
    """(C,) uncalibrated photo-level scores of an (H, W, 3) uint8 photo, seen through the model's view."""
    views = encoder_views(to_tensor(rgb)[None], model.cfg.view)
    return model.cfg.view.mean_log_probs(model.classify(views).double().numpy())


def score_photos(model: TAPNet, folders: dict[str, list[Path]], folder_class: dict[str, str]) -> list[PhotoScore]:
    model.eval()
    return [
        PhotoScore(folder, path.name, model.classes.index(folder_class[folder]), mean_log_probs(model, read_rgb(path)))
        for folder, paths in folders.items()
        for path in paths
    ]


def weather_photo_scores(model: TAPNet, root: Path, split: str = "dev") -> list[PhotoScore]:
    return score_photos(model, labelled_photos(root, split), FOLDER_CLASS)


def real_photo_scores(model: TAPNet, root: Path) -> list[PhotoScore]:
    """`../shared/data/real`: one folder per weather, named after its class."""
    folders = {f: list_images(Path(root) / f) for f in REAL_FOLDERS if (Path(root) / f).is_dir()}
    return score_photos(model, folders, {f: f for f in folders})


def synthetic_scores(model: TAPNet, clean_dir: Path, per_task: int = 8, holdout_every: int = 11) -> list[PhotoScore]:
    """Synthetic weather (v1 generators) on the clean photos training held out, as `tap-train
    evaluate --synthetic` draws it; the folder is the task."""
    model.eval()
    photos = held_out_photos(clean_dir, holdout_every=holdout_every)
    return [
        PhotoScore(task, sample.name, t, mean_log_probs(model, sample.lq))
        for t, task in enumerate(model.tasks)
        for sample in synthetic_samples(photos, t, task, per_task, seed=0)
    ]


def probabilities(scores: list[PhotoScore], temperature: float) -> np.ndarray:
    """(N, C) calibrated probabilities."""
    z = np.stack([s.mean_log_probs for s in scores]) / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def nll(scores: list[PhotoScore], temperature: float) -> float:
    p = probabilities(scores, temperature)
    return float(-np.mean(np.log(p[np.arange(len(scores)), [s.label for s in scores]] + 1e-12)))


def fit_temperature(scores: list[PhotoScore]) -> float:
    """The temperature of least negative log-likelihood on these photos (a fine grid: one scalar)."""
    return float(min(TEMPERATURES, key=lambda t: nll(scores, t)))


def expected_calibration_error(scores: list[PhotoScore], temperature: float, bins: int = 10) -> float:
    """|accuracy - confidence| of the top class, averaged over equal-width confidence bins by count."""
    p = probabilities(scores, temperature)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = predicted == np.array([s.label for s in scores])
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def decisions(model: TAPNet, scores: list[PhotoScore], rule: AutoRule, temperature: float) -> list[str]:
    """The service's decision label for each photo."""
    p = probabilities(scores, temperature)
    return [rule.decide(dict(zip(model.classes, row.tolist(), strict=True)), model.tasks).label for row in p]


def right_shares(scores: list[PhotoScore], labels: list[str]) -> dict[str, float]:
    """Folder -> share of its photos decided right (training.weather_photos.decision_is_right)."""
    hits: dict[str, list[bool]] = {}
    for s, label in zip(scores, labels, strict=True):
        hits.setdefault(s.folder, []).append(decision_is_right(s.folder, label))
    return {folder: float(np.mean(h)) for folder, h in hits.items()}


def choose_rule(model: TAPNet, scores: list[PhotoScore], temperature: float, base: AutoRule) -> AutoRule:
    """clean_threshold and min_weather_prob (mixture terms kept) that keep >= CLEAR_UNTOUCHED_MIN
    of the clear photos untouched and then get the most folders right on average; among equals,
    the lowest thresholds (the least abstention)."""
    best, best_key = base, None
    for clean_threshold, min_weather in itertools.product(THRESHOLDS[1:], THRESHOLDS):
        rule = replace(base, clean_threshold=float(clean_threshold), min_weather_prob=float(min_weather))
        shares = right_shares(scores, decisions(model, scores, rule, temperature))
        if shares.get("clear", 1.0) < CLEAR_UNTOUCHED_MIN:
            continue
        key = (float(np.mean(list(shares.values()))), -clean_threshold - min_weather)
        if best_key is None or key > best_key:
            best, best_key = rule, key
    return best


def calibrate(model: TAPNet, dev: list[PhotoScore]) -> tuple[TAPNet, dict]:
    """The model with its fitted temperature and chosen rule in its config, and what was measured."""
    before = model.cfg.classifier_temperature
    temperature = fit_temperature(dev)
    rule = choose_rule(model, dev, temperature, model.cfg.auto_rule)
    model.cfg = replace(
        model.cfg,
        classifier_temperature=temperature,
        auto_clean_threshold=rule.clean_threshold,
        auto_min_weather_prob=rule.min_weather_prob,
        auto_mixture_min_prob=rule.mixture_min_prob,
        auto_mixture_margin=rule.mixture_margin,
    )
    report = {
        "photos": len(dev),
        "temperature": {"before": before, "after": temperature},
        "ece": {
            "before": expected_calibration_error(dev, before),
            "after": expected_calibration_error(dev, temperature),
        },
        "nll": {"before": nll(dev, before), "after": nll(dev, temperature)},
        "rule": rule.to_dict(),
    }
    return model, report


def confusion_table(model: TAPNet, scores: list[PhotoScore], title: str) -> list[str]:
    """Markdown: one row per folder, one column per decision (mixtures as `a+b`), and the share right."""
    labels = decisions(model, scores, model.cfg.auto_rule, model.cfg.classifier_temperature)
    columns = [*model.tasks, CLEAN_CLASS]
    columns += sorted({label for label in labels if label not in columns})
    rows: dict[str, Counter] = {}
    hits: Counter = Counter()
    for s, label in zip(scores, labels, strict=True):
        rows.setdefault(s.folder, Counter())[label] += 1
        hits[s.folder] += decision_is_right(s.folder, label)
    lines = [f"**{title}** ({len(scores)} photos; rows: folder, columns: auto mode's decision)", ""]
    lines += ["| folder | n | " + " | ".join(columns) + " | right |", "| --- " * (len(columns) + 3) + "|"]
    for folder, counts in rows.items():
        cells = [str(counts.get(c, 0)) for c in columns]
        n = sum(counts.values())
        right = f"{hits[folder]}/{n} ({hits[folder] / n:.0%})"
        lines.append(f"| {folder} | {n} | " + " | ".join(cells) + f" | {right} |")
    lines += ["", f"All: {sum(hits.values())}/{len(scores)} right.", ""]
    return lines


def auto_mode_report(
    model: TAPNet, weather_photos: Path | None, real: Path | None, clean_dir: Path | None = None
) -> str:
    """The confusion matrices `tap-train evaluate` prints, with the rule and calibration in force."""
    cfg = model.cfg
    lines = [
        "## Auto mode on real photos",
        "",
        f"Rule: {cfg.auto_rule.to_dict()}; calibration temperature {cfg.classifier_temperature:.3g}; "
        f"view {cfg.classifier_view} {cfg.classifier_size}/{cfg.classifier_max_side}.",
        "",
    ]
    if weather_photos is not None:
        dev = weather_photo_scores(model, weather_photos, "dev")
        lines += confusion_table(model, dev, f"weather-photos, dev split ({weather_photos})")
        ece = expected_calibration_error(dev, cfg.classifier_temperature)
        lines += [f"Expected calibration error (10 bins): {ece:.3f}", ""]
    if real is not None:
        lines += confusion_table(model, real_photo_scores(model, real), f"real photos ({real})")
    if clean_dir is not None:
        title = f"synthetic weather, 8 per task, on the held-out photos of {clean_dir}"
        lines += confusion_table(model, synthetic_scores(model, clean_dir), title)
    return "\n".join(lines)
