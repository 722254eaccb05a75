"""Image folders and files of training data: listed and decoded with errors that name the path.

Torch-free and free of the synthesis code, so the datasets and the synthesis assets both use it.
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from training.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: Path, what: str = "data") -> list[Path]:
    """Sorted image files of a folder; `what` names the folder's role in the error messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images in {what} folder {folder}")
    return files


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """uint8 (H, W, 3) for RGB, (H, W) for L; unreadable files raise DataError naming the path."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3)."""
    return read_image(path, "RGB")


def list_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(input, target) paths of a paired folder: ROOT/input/NAME and ROOT/target/NAME."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"paired data folder not found: {root}")
    inputs = list_images(root / "input")
    target_dir = root / "target"
    if not target_dir.is_dir():
        raise DataError(f"paired data folder has no target/: {target_dir}")
    pairs = []
    for path in inputs:
        target = target_dir / path.name
        if not target.is_file():
            raise DataError(f"missing target for {path}: expected {target}")
        pairs.append((path, target))
    return pairs


def read_pair(lq_path: Path, gt_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair (uint8 RGB), which must be the same size."""
    lq, gt = read_rgb(lq_path), read_rgb(gt_path)
    if lq.shape != gt.shape:
        raise DataError(f"size mismatch: {lq_path} {lq.shape} vs {gt_path} {gt.shape}")
    return lq, gt


def fit_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Downscale (bicubic) so the longer side is at most `size`; 0 keeps full resolution."""
    h, w = image.shape[:2]
    if size <= 0 or max(h, w) <= size:
        return image
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BICUBIC))
