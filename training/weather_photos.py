"""The dev/train split of ../shared/data/weather-photos: a fixed rule on the file name, so every
tool (training, `tap-train evaluate`, benches) agrees on it without a list file."""

import hashlib
from pathlib import Path

from training.image_files import list_images

DEV_EVERY = 5  # one photo in five is dev


def is_dev(name: str) -> bool:
    """Whether a photo (its bare file name, e.g. "mwd_123.jpg") is in the dev split."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % DEV_EVERY == 0


def split_files(folder: Path, split: str) -> list[Path]:
    """The images of `folder` in `split` ("dev" or "train"), sorted."""
    if split not in ("dev", "train"):
        raise ValueError(f"split must be 'dev' or 'train', got {split!r}")
    return [p for p in list_images(Path(folder)) if is_dev(p.name) == (split == "dev")]
