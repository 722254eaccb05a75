"""Real photos labelled by weather (`../shared/data/weather-photos`): the fixed dev split and labels.

A photo is in the dev split when the SHA-256 of its bare file name is 0 mod 5 (about one in
five per folder), so the split never moves when photos are added or the folder is copied. The
dev split chooses between classifier trials; it is never trained on.

Folder -> the class the classifier learns, and the decisions that count as right:
- `rain`: rain falling or on glass; `rain` or `raindrop` (or a mixture holding one) is right.
- `fog`: fog, mist, haze, smog; `haze`.
- `clear`: nothing to remove; `clean` (returned untouched).
- `snow-scene`: mostly snow lying on the ground, which is scene content; `clean`.
"""

import hashlib
from pathlib import Path

from training.image_files import list_images

SPLITS = ("train", "dev")
FOLDER_CLASS = {"rain": "rain", "fog": "haze", "clear": "clean", "snow-scene": "clean"}
RIGHT_DECISIONS = {"rain": ("rain", "raindrop"), "fog": ("haze",), "clear": ("clean",), "snow-scene": ("clean",)}


def is_dev(name: str) -> bool:
    """True for the photos of the dev split: sha256(bare file name) % 5 == 0."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0


def split_files(folder: Path, split: str) -> list[Path]:
    """The photos of one folder in `split` ("train" or "dev"), sorted."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [p for p in list_images(Path(folder), "weather-photos") if is_dev(p.name) == (split == "dev")]


def labelled_photos(root: Path, split: str) -> dict[str, list[Path]]:
    """Folder name -> its photos in `split`, for the folders of FOLDER_CLASS that `root` holds."""
    root = Path(root)
    found = {name: split_files(root / name, split) for name in FOLDER_CLASS if (root / name).is_dir()}
    if not found:
        raise FileNotFoundError(f"{root} has none of the weather-photos folders ({', '.join(FOLDER_CLASS)})")
    return found


def decision_is_right(folder: str, decision: str) -> bool:
    """A decision (`clean`, a task, or `a+b`) is right for a folder when it names an accepted class;
    for clean folders it must be `clean` exactly (any prompt alters the photo)."""
    accepted = RIGHT_DECISIONS.get(folder, (folder,))
    if accepted == ("clean",):
        return decision == "clean"
    return any(part in accepted for part in decision.split("+"))
