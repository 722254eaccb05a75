"""Tiny data folders for training tests: procedurally drawn photos, so no dataset is needed."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synth
from training.scenes import draw_city_scene, to_uint8
from training.weather_photos import FOLDER_CLASS, is_dev

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


def names_in_split(dev: bool, count: int, prefix: str) -> list[str]:
    found, k = [], 0
    while len(found) < count:
        name = f"{prefix}_{k}.png"
        if is_dev(name) == dev:
            found.append(name)
        k += 1
    return found


@pytest.fixture(scope="session")
def weather_photos(tmp_path_factory) -> Path:
    """Four labelled folders of drawn scenes (fog: washed out, rain: bright streaks), 3 train + 2 dev each."""
    root = tmp_path_factory.mktemp("weather-photos")
    rng = np.random.default_rng(0)
    for f, folder in enumerate(FOLDER_CLASS):
        (root / folder).mkdir()
        for k, name in enumerate(names_in_split(False, 3, folder) + names_in_split(True, 2, folder)):
            img = draw_city_scene(64, 80, seed=10 * f + k)
            if folder == "fog":
                img = 0.35 * img + 0.6
            elif folder == "rain":
                img = synth.apply("rain", img.astype(np.float32), rng, 0.8)
            Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(root / folder / name)
    return root
