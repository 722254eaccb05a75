"""`tap-train pseudo-pairs`: real photos paired with a teacher's fine-detail restoration."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from tests.training.test_metrics import texture, with_streaks
from training.cli import main
from training.pseudo_pairs import MANIFEST, pseudo_target
from training.synth.common import gaussian_blur
from training.weather_photos import is_dev


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight streaked photos (some in the dev split by name) through a tiny random teacher."""
    root = tmp_path_factory.mktemp("pseudo")
    photos = root / "rain"
    photos.mkdir()
    for k in range(8):
        Image.fromarray(with_streaks(texture(48, 64, seed=k))).save(photos / f"rain_{k}.jpg", quality=95)
    teacher = root / "teacher.safetensors"
    save_weights(make_tiny_model(), teacher)
    out = root / "pairs"
    argv = ["pseudo-pairs", str(teacher), "--photos", str(photos), "--prompt", "rain", "--out", str(out)]
    assert main(argv + ["--min-change", "0"]) == 0
    return photos, out


def test_only_the_train_split_is_paired(made) -> None:
    photos, out = made
    train = sorted(p.stem for p in photos.iterdir() if not is_dev(p.name))
    assert 0 < len(train) < 8  # the fixture's names put photos in both splits
    for sub in ("input", "target"):
        assert sorted(p.stem for p in (out / sub).iterdir()) == train
    record = json.loads((out / MANIFEST).read_text())
    assert [p["name"] for p in record["pairs"]] == train and record["prompt"] == "rain"


def test_inputs_are_the_photos_and_targets_keep_their_low_frequencies(made) -> None:
    photos, out = made
    for target_path in (out / "target").iterdir():
        photo = np.asarray(Image.open(photos / f"{target_path.stem}.jpg").convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(out / "input" / target_path.name)), photo)
        target = np.asarray(Image.open(target_path))
        assert not np.array_equal(target, photo)  # the teacher changed something
        coarse_in = gaussian_blur(photo.astype(np.float32) / 255, 6.0)
        coarse_out = gaussian_blur(target.astype(np.float32) / 255, 6.0)
        assert np.abs(coarse_out - coarse_in)[8:-8, 8:-8].mean() < 0.02  # within 8-bit rounding and clipping


def test_the_target_is_the_teachers_detail_on_the_inputs_light() -> None:
    photo = texture(40, 40)
    darker = np.clip(photo.astype(np.float32) / 255 - 0.15, 0, 1)  # a teacher that only darkens
    target = pseudo_target(photo, darker, 6.0).astype(int)
    assert abs(target.mean() - photo.mean()) < 1.0  # its darkening undone
    assert np.abs(target - photo).max() <= 12  # but for what clipping at black took


def test_photos_the_teacher_leaves_alone_are_skipped(made, tmp_path: Path) -> None:
    photos, _ = made
    teacher = tmp_path / "teacher.safetensors"
    save_weights(make_tiny_model(), teacher)
    argv = ["pseudo-pairs", str(teacher), "--photos", str(photos), "--prompt", "rain", "--out", str(tmp_path / "p")]
    assert main(argv + ["--min-change", "1.5"]) == 0
    assert not list((tmp_path / "p" / "target").iterdir())
    assert not any(p["kept"] for p in json.loads((tmp_path / "p" / MANIFEST).read_text())["pairs"])


def test_a_prompt_the_teacher_lacks_is_refused(made, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos, _ = made
    teacher = tmp_path / "teacher.safetensors"
    save_weights(make_tiny_model(), teacher)
    argv = ["pseudo-pairs", str(teacher), "--photos", str(photos), "--prompt", "fog", "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    assert "no prompt 'fog'" in capsys.readouterr().err and not (tmp_path / "p").exists()
