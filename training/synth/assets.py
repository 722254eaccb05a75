"""Data the v2 generators composite from, loaded once per dataset (never at import).

- StreakBank: rendered rain-streak layers (Garg & Nayar 2006), grayscale on black.
- DepthBank: indoor photos with aligned depth (NYU Depth v2), the source of RESIDE's ITS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError
from training.image_files import list_images, read_image


@dataclass(frozen=True)
class StreakBank:
    """uint8 streak layers (bright streaks on black), kept whole: crops are drawn per sample."""

    layers: tuple[np.ndarray, ...]
    folder: Path

    @classmethod
    def load(cls, folder: Path) -> StreakBank:
        folder = Path(folder)
        layers = tuple(read_image(p, "L") for p in list_images(folder, "rain-streak"))
        small = [p.shape for p in layers if min(p.shape) < 16]
        if small:
            raise DataError(f"rain-streak layers in {folder} must be at least 16 px, found {small[0]}")
        return cls(layers, folder)


@dataclass(frozen=True)
class DepthBank:
    """Paths of the RGB photos and their depth maps, already read (uint8, larger = farther).

    Photos are decoded per sample (700 of them would be ~650 MB in memory); depth maps are
    small (320x240) and read once.
    """

    images: tuple[Path, ...]
    depths: tuple[np.ndarray, ...]
    folder: Path

    @classmethod
    def load(cls, folder: Path) -> DepthBank:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"depth data folder not found: {folder}")
        images = list_images(folder / "image", "depth-data image")
        depth_dir = folder / "depth"
        depth_files = {p.stem: p for p in list_images(depth_dir, "depth-data depth")}
        missing = [p for p in images if p.stem not in depth_files]
        if missing:
            raise DataError(f"no depth map for {missing[0]} in {depth_dir}")
        depths = tuple(read_image(depth_files[p.stem], "L") for p in images)
        return cls(tuple(images), depths, folder)
