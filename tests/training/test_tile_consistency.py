"""Tiled vs whole restoration through the service's own engine and tiling: >= 40 dB apart at
most, for every weather prompt, on a photo-like scene cut into the service's default tiles (issue 13;
`python -m bench.tile_consistency` measures 1-3 MP photos)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.common import service_engine
from bench.tile_consistency import agreement_db, restore_tiled, restore_whole
from model.net import NET_VARIANTS, TAPNet
from service.settings import Settings
from tests.training.test_loops import PROCEDURAL_WEATHER_ONLY
from training.config import load_config
from training.export import export_bundle
from training.loops import PretrainStep, build_training_set, fit
from training.random_model import RESIDUAL_SCALES, random_model
from training.scenes import draw_city_scene

pytestmark = pytest.mark.slow  # exports and trains: `make test` runs it, `make test-fast` does not

TARGET_DB = 40.0
TILE, OVERLAP = Settings().tile_size, Settings().tile_overlap


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """(3, 1000, 1400): 1.4 MP, cut into 2 x 3 default tiles (768 px, overlap 192)."""
    return np.ascontiguousarray(draw_city_scene(1000, 1400, seed=3).transpose(2, 0, 1), dtype=np.float32)


def worst_agreement(model: TAPNet, photo: np.ndarray, folder: Path, tasks: int | None = None) -> float:
    engine = service_engine(export_bundle(model.eval(), folder, model_version="tile-test"), threads=1)
    prompts = sorted(engine.prompts.items())[:tasks]
    return min(
        agreement_db(restore_tiled(engine, photo, p, TILE, OVERLAP), restore_whole(engine, photo, p))
        for _, p in prompts
    )


def test_random_model_tiles_agree_with_the_whole(photo, tmp_path):
    assert worst_agreement(random_model("tiny", seed=5), photo, tmp_path / "b") >= TARGET_DB


def test_short_trained_model_tiles_agree_with_the_whole(photo, tiny_clean_dir, tmp_path):
    cfg = load_config(
        None,
        [
            "steps=40",
            "data.crop=64",
            "data.batch_size=4",
            "data.workers=0",
            "data.samples_per_epoch=64",
            f"data.clean_dir={tiny_clean_dir}",
            "log_every=10",
            "save_every=1000",
            "optim.lr=0.003",
            "optim.warmup_steps=1",
            *PROCEDURAL_WEATHER_ONLY,
        ],
    )
    model = random_model("tiny", seed=2)  # randomized residual scales: every block does something
    fit(PretrainStep(model), model.freeze_for("pretrain"), build_training_set(cfg, model.tasks), cfg, tmp_path, "t")
    assert worst_agreement(model, photo, tmp_path / "b") >= TARGET_DB


def test_a_global_operation_breaks_the_agreement(photo, tmp_path):
    """The control: architecture 1's channel attention over the whole input, made strong, fails;
    so the threshold above is one a network can miss."""
    torch.manual_seed(0)
    model = TAPNet(replace(NET_VARIANTS["tiny"], arch=1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(RESIDUAL_SCALES):
                p.normal_(0.0, 1.0)
            if name.endswith("sca.weight"):
                p.mul_(100)  # strong enough to show through the default 192-px overlap (36 dB)
    assert worst_agreement(model, photo, tmp_path / "b", tasks=1) < TARGET_DB
