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


def fit_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Downscale (bicubic) so the longer side is at most `size`; 0 keeps full resolution."""
    h, w = image.shape[:2]
    if size <= 0 or max(h, w) <= size:
        return image
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BICUBIC))
