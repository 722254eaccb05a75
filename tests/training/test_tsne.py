"""t-SNE figure: features per sample, one panel row per model, a PNG that opens."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from training.cli import main
from training.evaluate import Sample
from training.metrics import quantize
from training.tsne import plot_tsne, sample_features, separation, tsne_samples

CLEAN_PHOTOS = 17  # photos 5 and 16 are held out (holdout_every=11)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for k in range(CLEAN_PHOTOS):
        ys, xs = np.mgrid[0:48, 0:64] / np.array([48, 64])[:, None, None]
        img = np.stack([ys, xs, 1 - ys * xs], -1) * rng.uniform(0.4, 1.0, 3) + rng.normal(0, 0.05, (48, 64, 3))
        Image.fromarray(quantize(img)).save(folder / f"{k:02d}.png")
    return folder


def test_samples_cover_every_task_and_clean(clean_dir: Path) -> None:
    model = make_tiny_model()
    samples = tsne_samples(model, clean_dir, per_task=3, seed=0)
    counts = np.bincount([s.task for s in samples], minlength=5)
    assert counts.tolist() == [3, 3, 3, 3, 2]  # clean: only the 2 held-out photos, no duplicates


def test_features_have_one_row_per_sample_and_follow_the_prompt(clean_dir: Path) -> None:
    model = make_tiny_model()
    samples = tsne_samples(model, clean_dir, per_task=1, seed=0)
    features = sample_features(model, samples)
    level_channels = sum(level.channels for level in model.prompts.levels)
    assert features["encoder"].shape == (len(samples), model.cfg.embed_dim)
    assert features["prompted"].shape == (len(samples), level_channels)
    assert all(not level._forward_hooks for level in model.prompts.levels)  # hooks removed
    image = samples[0].lq
    as_rain, as_haze = (sample_features(model, [Sample("x", image, image, t)])["prompted"] for t in (0, 2))
    assert not np.allclose(as_rain, as_haze)  # the prompted features depend on the task prompt


def test_separation_is_high_for_separated_classes_and_undefined_for_one() -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal([5, 0], 0.1, (6, 2)), rng.normal([0, 5], 0.1, (6, 2))])
    labels = np.repeat([0, 1], 6)
    assert separation(features, labels) > 0.9
    assert separation(features, np.zeros(12, int)) is None


def test_plot_for_one_and_two_models(clean_dir: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    plot_tsne({"on": make_tiny_model(0)}, clean_dir=clean_dir, out_path=one, per_task=2)
    plot_tsne({"on": make_tiny_model(0), "off": make_tiny_model(1)}, clean_dir=clean_dir, out_path=two, per_task=2)
    with Image.open(one) as a, Image.open(two) as b:
        assert a.format == b.format == "PNG"
        assert a.width == b.width and b.height > 1.7 * a.height  # a second row of panels


def test_per_task_must_be_positive(clean_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_task"):
        plot_tsne({"m": make_tiny_model()}, clean_dir=clean_dir, out_path=tmp_path / "x.png", per_task=0)


def test_cli_tsne_compares_two_checkpoints(clean_dir: Path, tmp_path: Path) -> None:
    for seed, name in ((0, "on"), (1, "off")):
        save_weights(make_tiny_model(seed), tmp_path / f"{name}.safetensors")
    out = tmp_path / "tsne.png"
    argv = [
        "tsne",
        str(tmp_path / "on.safetensors"),
        "--compare",
        str(tmp_path / "off.safetensors"),
        "--out",
        str(out),
        "--clean-dir",
        str(clean_dir),
        "--per-task",
        "2",
    ]
    assert main(argv) == 0
    assert out.stat().st_size > 10_000
