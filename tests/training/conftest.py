"""Tiny data folders for training tests: procedurally drawn photos, so no dataset is needed."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def draw_scene(rng: np.random.Generator, h: int = 72, w: int = 96) -> np.ndarray:
    """A smooth gradient with a few coloured rectangles: structure for the generators to degrade."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x * y], axis=-1) * rng.uniform(0.4, 0.9, 3)
    for _ in range(4):
        top, left = rng.integers(0, h - 8), rng.integers(0, w - 8)
        base[top : top + rng.integers(6, 30), left : left + rng.integers(6, 30)] = rng.uniform(0, 1, 3)
    return (np.clip(base, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(draw_scene(rng)).save(folder / f"scene{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_paired_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """input/ and target/ with the same names: a darkened 'weather' over drawn scenes."""
    root = tmp_path_factory.mktemp("paired")
    (root / "input").mkdir()
    (root / "target").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        gt = draw_scene(rng)
        lq = (gt * 0.6 + 40).astype(np.uint8)
        Image.fromarray(gt).save(root / "target" / f"p{i}.png")
        Image.fromarray(lq).save(root / "input" / f"p{i}.png")
    return root
