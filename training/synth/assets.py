"""Data the v2 generators composite from, loaded once per dataset (never at import).

- StreakBank: rendered rain-streak layers (Garg & Nayar 2006), grayscale on black.
- DepthBank: indoor photos with aligned depth (NYU Depth v2), the source of RESIDE's ITS.
- RainLayerBank: the rain of real additive-rain pairs (Rain100H's training distribution), lifted
  off their backgrounds so it can fall on other photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError
from training.image_files import list_images, list_pairs, read_image, read_pair
from training.synth.common import gaussian_blur


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


SATURATED = 254  # an input channel at or above this (uint8) may have been clipped by the rain
MAX_SATURATED_SHARE = 0.2  # layers whose input is clipped over more of the photo are left out


@dataclass(frozen=True)
class RainLayerBank:
    """Grayscale rain layers S from pairs made as input = clip(target + S), S the same in every
    channel (true of `train/rain-heavy`: where no channel clips, the three differences agree).

    Where a channel clipped, max over channels of input - target still reads S; where all three
    did, S is only bounded below, and is filled from the surrounding rain (a normalised Gaussian
    average), so the bright sky of the source photo leaves no rain-free silhouette behind.
    """

    layers: tuple[np.ndarray, ...]  # float32 (H, W) in [0, 1]
    folder: Path

    @classmethod
    def load(cls, folder: Path, fill_sigma: float = 8.0) -> RainLayerBank:
        folder = Path(folder)
        layers = []
        for paths in list_pairs(folder):
            rainy, clean = read_pair(*paths)
            clipped = (rainy >= SATURATED).all(axis=-1)
            if clipped.mean() > MAX_SATURATED_SHARE:
                continue
            layers.append(_fill_clipped(rainy, clean, clipped, fill_sigma))
        if not layers:
            raise DataError(f"no usable rain-layer pairs in {folder} (each input clipped over > 20 %?)")
        return cls(tuple(layers), folder)


def _fill_clipped(rainy: np.ndarray, clean: np.ndarray, clipped: np.ndarray, sigma: float) -> np.ndarray:
    """S = max over channels of rainy - clean; under fully clipped pixels, the local mean of S
    where it is known, never below the bound 1 - clean the clipping still gives."""
    diff = (rainy.astype(np.float32) - clean.astype(np.float32)) / 255.0
    layer = np.clip(diff.max(axis=-1), 0, 1)
    known = (~clipped).astype(np.float32)
    local = gaussian_blur(layer * known, sigma) / np.maximum(gaussian_blur(known, sigma), 1e-3)
    return np.where(clipped, np.maximum(local, layer), layer).astype(np.float32)
