"""Pseudo pairs: real weather photos with a teacher's restoration as the target (self-training).

Real rain photos have no ground truth, and synthetic rain never quite looks like them. A teacher
checkpoint that removes real streaks (an earlier bundle) restores the train split of a
weather-photos folder under one prompt, flip-ensembled; the target keeps only what the teacher
changed in fine detail: target = teacher + blur(input) - blur(teacher), with a Gaussian of
`low_pass` px. The input's low frequencies come back, so a teacher that also dehazes and darkens
the photo (the rain veil) passes on its streak removal, not its darkening. Photos where the target
changes less than `min_change` of the fine detail (`training.metrics.fine_structure_change`: no
visible rain, or rain on glass the prompt leaves alone) are skipped. The pairs are written as
PNG (`input/`, `target/`, one name) for `data.real_pairs`.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.checkpoint import load_model
from model.net import TAPNet
from training.datasets import to_tensor
from training.image_files import read_rgb
from training.metrics import fine_structure_change, quantize, rgb_to_y
from training.synth.common import gaussian_blur
from training.weather_photos import split_files

log = logging.getLogger(__name__)

MANIFEST = "pseudo_pairs.json"


@dataclass(frozen=True)
class PseudoPair:
    name: str
    fine_change: float  # of the target against the input
    brightness: float  # mean Y of the target minus the input's, grey levels
    kept: bool


@torch.no_grad()
def teacher_output(model: TAPNet, image: np.ndarray, prompt: str) -> np.ndarray:
    """The teacher's restoration (H, W, 3) float in 0..1, averaged with that of the mirrored photo."""
    x = to_tensor(image)[None]
    vector = model.prompt_for([prompt])
    plain = model(x, vector)
    mirrored = model(x.flip(-1), vector).flip(-1)
    return ((plain + mirrored) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def pseudo_target(image: np.ndarray, restored: np.ndarray, low_pass: float) -> np.ndarray:
    """The teacher's fine-detail change on the input's low frequencies, as uint8."""
    lq = image.astype(np.float32) / 255
    out = restored.astype(np.float32)
    return quantize(out + gaussian_blur(lq, low_pass) - gaussian_blur(out, low_pass))


def make_pseudo_pairs(
    teacher: Path, photos: Path, prompt: str, out_dir: Path, low_pass: float = 6.0, min_change: float = 0.1
) -> list[PseudoPair]:
    """Pseudo pairs from the train split of `photos` (never its dev split) into out_dir."""
    model = load_model(Path(teacher))[0].eval()
    if prompt not in model.tasks:
        raise ValueError(f"the teacher has no prompt {prompt!r}; it has {', '.join(model.tasks)}")
    paths = split_files(Path(photos), "train")
    if not paths:
        raise ValueError(f"no train-split photos in {photos}")
    for sub in ("input", "target"):
        (Path(out_dir) / sub).mkdir(parents=True, exist_ok=True)
    pairs = []
    for path in paths:
        image = read_rgb(path)
        target = pseudo_target(image, teacher_output(model, image, prompt), low_pass)
        change = fine_structure_change(image, target)
        brightness = float(rgb_to_y(target).mean() - rgb_to_y(image).mean())
        pair = PseudoPair(path.stem, change, brightness, change >= min_change)
        if pair.kept:
            Image.fromarray(image).save(Path(out_dir) / "input" / f"{path.stem}.png")
            Image.fromarray(target).save(Path(out_dir) / "target" / f"{path.stem}.png")
        pairs.append(pair)
        skipped = "" if pair.kept else " (skipped)"
        log.info("%s: fine change %.3f, brightness %+.1f%s", path.name, change, brightness, skipped)
    record = {
        "teacher": str(teacher),
        "photos": str(photos),
        "prompt": prompt,
        "low_pass": low_pass,
        "min_change": min_change,
        "pairs": [asdict(p) for p in pairs],
    }
    (Path(out_dir) / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
    return pairs
