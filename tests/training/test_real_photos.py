"""evaluate --real on tiny folders: auto accuracy as the service's rule decides, grid scores, report."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.encoder import encoder_view
from tests.conftest import make_tiny_model
from training.datasets import DataError, to_tensor
from training.evaluate import run_evaluation
from training.metrics import grid_score
from training.scenes import draw_city_scene, smooth_noise


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    for k, label in enumerate(["rain", "rain", "haze", "clean"]):
        (root / label).mkdir(exist_ok=True)
        img = (draw_city_scene(96, 128, seed=k) * 255).round().astype(np.uint8)
        Image.fromarray(img).save(root / label / f"{k}.png")
    (root / "notes").mkdir()  # not a class: ignored
    return root


def test_real_photos_auto_accuracy_follows_the_service_rule(real_dir, tmp_path):
    model = make_tiny_model()
    results = run_evaluation(
        model, clean_dir=real_dir, synthetic_per_task=0, paired=[], out_dir=tmp_path, real=real_dir
    )["real"]
    hits = 0
    for path in sorted(real_dir.glob("*/*.png")):
        x = to_tensor(np.asarray(Image.open(path)))[None]
        with torch.no_grad():
            probs = torch.softmax(model.classify(encoder_view(x, model.cfg.view)).double(), 1)[0].tolist()
        decision = model.cfg.auto_rule.decide(dict(zip(model.classes, probs, strict=True)), model.tasks)
        label = path.parent.name
        hits += decision.clean if label == "clean" else label in decision.weights
    assert results["n"] == 4 and set(results["folders"]) == {"rain", "haze", "clean"}
    assert results["auto_accuracy"] == hits / 4
    clean_photo = results["folders"]["clean"]["photos"]["3.png"]
    assert clean_photo["grid"]["given task"] == clean_photo["grid"]["input"]  # clean: returned untouched
    assert "## Real photos (no ground truth)" in (tmp_path / "report.md").read_text()
    assert len(list((tmp_path / "real").glob("*/*.png"))) == 4  # side-by-side previews


def test_held_out_clean_photos_are_counted_by_the_service_rule(real_dir, tmp_path):
    """The clean photos training held out (every 11th), whole, through auto mode: untouched or not."""
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    for k in range(22):
        img = (draw_city_scene(64, 96, seed=10 + k) * 255).round().astype(np.uint8)
        Image.fromarray(img).save(clean_dir / f"{k:02d}.png")
    model = make_tiny_model()
    out = tmp_path / "eval"
    results = run_evaluation(
        model, clean_dir=clean_dir, synthetic_per_task=0, paired=[], out_dir=out, real=real_dir, holdout_every=11
    )["real"]["held_out_clean"]
    expected: dict[str, int] = {}
    for name in ("05.png", "16.png"):  # split_clean's val split: index % 11 == 5
        x = to_tensor(np.asarray(Image.open(clean_dir / name)))[None]
        with torch.no_grad():
            probs = torch.softmax(model.classify(encoder_view(x, model.cfg.view)).double(), 1)[0].tolist()
        label = model.cfg.auto_rule.decide(dict(zip(model.classes, probs, strict=True)), model.tasks).label
        expected[label] = expected.get(label, 0) + 1
    assert results == {"n": 2, "untouched": expected.get("clean", 0), "decisions": expected}
    assert f"{results['untouched']} of 2 returned untouched" in (out / "report.md").read_text()


def test_real_folder_without_class_subfolders_is_a_clear_error(tmp_path):
    (tmp_path / "misc").mkdir()
    with pytest.raises(DataError, match="no subfolder named after a class"):
        run_evaluation(
            make_tiny_model(), clean_dir=tmp_path, synthetic_per_task=0, paired=[], out_dir=tmp_path, real=tmp_path
        )


def test_grid_score_sees_a_stride_pattern_and_not_a_scene():
    rng = np.random.default_rng(0)  # a texture with no periodic structure (the drawn city has windows)
    scene = 60 + 140 * smooth_noise(rng, 256, 320, 12)[..., None] + rng.normal(0, 2, (256, 320, 3))
    pattern = 3 * np.sin(2 * np.pi * np.arange(320) / 16)[None, :, None]
    plain = grid_score(np.round(scene).astype(np.uint8))
    gridded = grid_score(np.clip(np.round(scene + pattern), 0, 255).astype(np.uint8))
    assert 0.8 < plain < 1.1
    assert gridded > 1.5 * plain
    with pytest.raises(ValueError, match="at least 64x64"):
        grid_score(np.zeros((40, 200, 3), np.uint8))
