"""The synthetic weather generators: output contract, determinism, strength, contact sheet."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.synth import TASKS, apply, preview_sheet
from training.synth.sheet import HEADER, PAD, sheet_columns

CLEAN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clean"
PHOTOS = ("kodim04.png", "kodim21.png", "urban_img_015.png", "flowers.png")

# Mean RGB PSNR (dB) against the clean photo over PHOTOS x 3 seeds, at severity 0.2 / 0.9.
# Measured: rain 24.8 / 16.1, raindrop 31.4 / 22.1, haze 20.5 / 10.8, snow 24.2 / 17.3.
# Reference inputs: Rain100H 12.3, SOTS-indoor 12.5 (heavy ends sit near those).
PSNR_BANDS = {
    "rain": ((21.0, 30.0), (11.0, 20.0)),
    "raindrop": ((25.0, 37.0), (17.0, 27.0)),
    "haze": ((16.0, 26.0), (7.0, 15.0)),
    "snow": ((20.0, 28.0), (13.0, 21.0)),
}
MIN_GAP_DB = 4.0  # heavy must be clearly worse than light


def scene(h: int, w: int) -> np.ndarray:
    """Deterministic stand-in photo: colour gradients, a bright disc and fine stripes."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    disc = ((ys - h / 3) ** 2 + (xs - w / 2) ** 2 < (min(h, w) / 4) ** 2).astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(xs * 0.9)
    img = np.stack([ys / h, xs / w, 0.3 * stripes + 0.2], axis=-1) * 0.8 + 0.2 * disc[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    if not CLEAN_DIR.is_dir():
        pytest.skip(f"clean photos not found at {CLEAN_DIR}")
    crops = []
    for name in PHOTOS:
        im = Image.open(CLEAN_DIR / name).convert("RGB")
        left, top = (im.width - 128) // 2, (im.height - 96) // 2
        crop = im.crop((left, top, left + 128, top + 96))
        crops.append(np.asarray(crop, dtype=np.float32) / 255)
    return crops


def test_tasks_are_the_contract() -> None:
    assert TASKS == ("rain", "raindrop", "haze", "snow")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("shape", [(64, 64), (96, 128), (16, 16), (16, 61), (70, 17)])
@pytest.mark.parametrize("severity", [0.0, 0.2, 1.0])
def test_output_contract(task: str, shape: tuple[int, int], severity: float) -> None:
    clean = scene(*shape)
    before = clean.copy()
    out = apply(task, clean, np.random.default_rng(0), severity)
    assert out.shape == clean.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out is not clean and not np.shares_memory(out, clean)
    np.testing.assert_array_equal(clean, before)  # input not mutated


@pytest.mark.parametrize("task", TASKS)
def test_float64_input_gives_float32(task: str) -> None:
    out = apply(task, scene(32, 48).astype(np.float64), np.random.default_rng(0), 0.5)
    assert out.dtype == np.float32


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_per_seed(task: str) -> None:
    clean = scene(64, 80)
    first = apply(task, clean, np.random.default_rng(7), 0.6)
    again = apply(task, clean, np.random.default_rng(7), 0.6)
    other = apply(task, clean, np.random.default_rng(8), 0.6)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.05


@pytest.mark.parametrize("task", TASKS)
def test_psnr_band(task: str, photos: list[np.ndarray]) -> None:
    def mean_psnr(severity: float) -> float:
        scores = [
            psnr(apply(task, clean, np.random.default_rng(seed), severity), clean)
            for clean in photos
            for seed in range(3)
        ]
        return float(np.mean(scores))

    light, heavy = mean_psnr(0.2), mean_psnr(0.9)
    (light_lo, light_hi), (heavy_lo, heavy_hi) = PSNR_BANDS[task]
    assert light_lo <= light <= light_hi, f"{task} light PSNR {light:.1f} dB"
    assert heavy_lo <= heavy <= heavy_hi, f"{task} heavy PSNR {heavy:.1f} dB"
    assert heavy < light - MIN_GAP_DB


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="rain, raindrop, haze, snow"):
        apply("fog", scene(32, 32), np.random.default_rng(0), 0.5)


@pytest.mark.parametrize("severity", [-0.1, 1.5])
def test_severity_out_of_range_raises(severity: float) -> None:
    with pytest.raises(ValueError, match="severity"):
        apply("rain", scene(32, 32), np.random.default_rng(0), severity)


def test_non_rgb_input_raises() -> None:
    with pytest.raises(ValueError, match="H, W, 3"):
        apply("haze", np.zeros((32, 32), np.float32), np.random.default_rng(0), 0.5)


def test_preview_sheet_writes_labelled_png(tmp_path: Path) -> None:
    out_path = tmp_path / "sheet" / "synth.png"
    preview_sheet([scene(40, 48), scene(32, 32)], out_path, seed=3)
    columns = len(sheet_columns())
    assert columns == 1 + 2 * len(TASKS)
    with Image.open(out_path) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (columns * (48 + PAD) + PAD, HEADER + 2 * (40 + PAD) + PAD)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_large_image(task: str) -> None:
    out = apply(task, scene(1024, 1024), np.random.default_rng(0), 1.0)
    assert out.shape == (1024, 1024, 3) and out.dtype == np.float32
