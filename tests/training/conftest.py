"""Tiny data folders for training tests: procedurally drawn photos, so no dataset is needed."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.scenes import draw_city_scene, to_uint8

H, W = 72, 96


@pytest.fixture(scope="session")
def tiny_clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    for i in range(12):
        Image.fromarray(to_uint8(draw_city_scene(H, W, seed=i))).save(folder / f"scene{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_paired_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """input/ and target/ with the same names: a darkened 'weather' over drawn scenes."""
    root = tmp_path_factory.mktemp("paired")
    (root / "input").mkdir()
    (root / "target").mkdir()
    for i in range(4):
        gt = to_uint8(draw_city_scene(H, W, seed=100 + i))  # not the clean folder's scenes
        lq = (gt * 0.6 + 40).astype(np.uint8)
        Image.fromarray(gt).save(root / "target" / f"p{i}.png")
        Image.fromarray(lq).save(root / "input" / f"p{i}.png")
    return root
