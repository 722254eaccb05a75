"""The synthetic weather generators (v1 and v2): output contract, determinism, strength, contact sheet."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from training.datasets import DataError
from training.scenes import draw_city_scene
from training.synth import TASKS, apply, apply_pair, generators, preview_sheet
from training.synth.assets import DepthBank, StreakBank
from training.synth.haze import FlooredHaze, depth_haze, proxy_haze
from training.synth.sheet import HEADER, PAD, sheet_columns

CLEAN_DIR = SHARED_DATA / "clean"
PHOTOS = ("kodim04.png", "kodim21.png", "urban_img_015.jpg", "flowers.png")

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


# sha256 (first 16 hex) of v1 outputs on draw_city_scene(48, 64, seed=1), rng 3, severity 0.6,
# recorded before data engine v2 existed: v1 is the ablation baseline and must never drift.
# Snow and haze were re-recorded when their expm1/exp moved to float64: numpy's float32 kernels
# gave one-ulp different results on AVX2 and AVX-512 CPUs. All four digests are the same with
# numpy's dispatch capped at X86_V2, X86_V3 or X86_V4 (NPY_DISABLE_CPU_FEATURES).
V1_DIGESTS = {
    "rain": "ad7b47a4381245ba",
    "raindrop": "86ac442d9bb92736",
    "haze": "393aa8f192a41e77",
    "snow": "f4b2a86cefaadf29",
}


@pytest.fixture(scope="module")
def streak_bank(tmp_path_factory: pytest.TempPathFactory) -> StreakBank:
    """Three tiny fake streak layers: short, sparse, bright vertical streaks on black, as the real ones."""
    folder = tmp_path_factory.mktemp("streaks")
    rng = np.random.default_rng(0)
    for i in range(3):
        layer = np.zeros((40, 56), np.uint8)
        for y, x in zip(rng.integers(0, 32, 10), rng.integers(0, 56, 10), strict=True):
            layer[y : y + 8, x] = rng.integers(80, 255)
        Image.fromarray(layer).save(folder / f"{i}-4.png")
    return StreakBank.load(folder)


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def engine(request: pytest.FixtureRequest, streak_bank: StreakBank) -> dict:
    return generators(request.param, streak_bank)


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
def test_output_contract(task: str, shape: tuple[int, int], severity: float, engine: dict) -> None:
    clean = draw_city_scene(*shape)
    before = clean.copy()
    out = apply(task, clean, np.random.default_rng(0), severity, engine)
    assert out.shape == clean.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out is not clean and not np.shares_memory(out, clean)
    np.testing.assert_array_equal(clean, before)  # input not mutated


@pytest.mark.parametrize("task", TASKS)
def test_float64_input_gives_float32(task: str, engine: dict) -> None:
    out = apply(task, draw_city_scene(32, 48).astype(np.float64), np.random.default_rng(0), 0.5, engine)
    assert out.dtype == np.float32


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_per_seed(task: str, engine: dict) -> None:
    clean = draw_city_scene(64, 80)
    first = apply(task, clean, np.random.default_rng(7), 0.6, engine)
    again = apply(task, clean, np.random.default_rng(7), 0.6, engine)
    other = apply(task, clean, np.random.default_rng(8), 0.6, engine)
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
        apply("fog", draw_city_scene(32, 32), np.random.default_rng(0), 0.5)


@pytest.mark.parametrize("severity", [-0.1, 1.5])
def test_severity_out_of_range_raises(severity: float) -> None:
    with pytest.raises(ValueError, match="severity"):
        apply("rain", draw_city_scene(32, 32), np.random.default_rng(0), severity)


def test_non_rgb_input_raises() -> None:
    with pytest.raises(ValueError, match="H, W, 3"):
        apply("haze", np.zeros((32, 32), np.float32), np.random.default_rng(0), 0.5)


def test_preview_sheet_writes_labelled_png(tmp_path: Path) -> None:
    out_path = tmp_path / "sheet" / "synth.png"
    preview_sheet([draw_city_scene(40, 48), draw_city_scene(32, 32)], out_path, seed=3)
    columns = len(sheet_columns())
    assert columns == 1 + 2 * len(TASKS)
    with Image.open(out_path) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (columns * (48 + PAD) + PAD, HEADER + 2 * (40 + PAD) + PAD)


def test_preview_sheet_adds_a_row_per_real_weather(tmp_path: Path, streak_bank: StreakBank) -> None:
    out_path = tmp_path / "real.png"
    real = {"rain": [draw_city_scene(40, 48, seed=9)] * 2, "snow": [], "haze": [draw_city_scene(40, 48, seed=8)]}
    preview_sheet([draw_city_scene(40, 48)], out_path, generators=generators(2, streak_bank), real=real)
    with Image.open(out_path) as sheet:
        assert sheet.size[1] == HEADER + 3 * (40 + PAD) + PAD  # 1 synthetic row + rain + haze (snow empty)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_large_image(task: str) -> None:
    out = apply(task, draw_city_scene(1024, 1024), np.random.default_rng(0), 1.0)
    assert out.shape == (1024, 1024, 3) and out.dtype == np.float32


@pytest.mark.parametrize("task", TASKS)
def test_v1_is_bit_identical_to_the_baseline(task: str) -> None:
    out = apply(task, draw_city_scene(48, 64, seed=1), np.random.default_rng(3), 0.6, generators(1))
    assert hashlib.sha256(out.tobytes()).hexdigest()[:16] == V1_DIGESTS[task]


def test_unknown_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="version 3"):
        generators(3)


def test_v2_rain_uses_the_streak_layers(streak_bank: StreakBank) -> None:
    """With layers, v2 rain differs from procedural-only v2 rain for the same rng."""
    clean = draw_city_scene(64, 64, seed=2)
    with_layers = apply("rain", clean, np.random.default_rng(1), 0.8, generators(2, streak_bank))
    procedural = apply("rain", clean, np.random.default_rng(1), 0.8, generators(2))
    assert np.abs(with_layers - procedural).mean() > 0.01
    assert with_layers.mean() > clean.mean()  # streaks and veil brighten


def test_v2_downpour_streaks_are_fainter_and_finer(streak_bank: StreakBank) -> None:
    """A downpour's streaks (real heavy rain at viewing size) are fainter than ordinary rain's at
    the same severity, so the classifier sees rain that is mostly veil."""
    from training.synth.rain import StreakRain

    rain = StreakRain(streak_bank)

    def brightest(downpour: bool) -> float:
        layers = [rain.streaks((96, 128), np.random.default_rng(s), 0.8, downpour) for s in range(6)]
        return float(np.mean([np.percentile(layer, 99) for layer in layers]))

    assert brightest(True) < 0.8 * brightest(False)


def test_v2_stretched_streaks_are_longer() -> None:
    """A downpour's procedural streaks (stretch 1.5-3: long exposure) run further down the frame:
    the same streaks at stretch 3 stay correlated 40 px apart, at stretch 1 not at all."""
    from training.synth.rain import procedural_layer

    def correlation_40px_down(stretch: float) -> float:
        layer = procedural_layer(np.random.default_rng(3), (256, 128), 0.5, 0.8, 0.7, stretch)
        a, b = layer[:-40] - layer.mean(), layer[40:] - layer.mean()
        return float((a * b).mean() / layer.var())

    assert correlation_40px_down(3.0) > 0.3
    assert correlation_40px_down(1.0) < 0.05


@pytest.mark.parametrize("task", TASKS)
def test_v2_heavy_is_worse_than_light(task: str, streak_bank: StreakBank) -> None:
    engine = generators(2, streak_bank)
    clean = draw_city_scene(96, 128, seed=4)

    def mean_psnr(severity: float) -> float:
        return float(
            np.mean([psnr(apply(task, clean, np.random.default_rng(s), severity, engine), clean) for s in range(4)])
        )

    assert mean_psnr(0.9) < mean_psnr(0.2) - 2.0


def test_depth_haze_follows_the_scattering_model() -> None:
    """Near pixels (depth 0) keep the scene; the far end sits at exp(-beta) with beta in RESIDE's range."""
    clean = np.full((8, 16, 3), 0.2, np.float32)
    depth = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (8, 1))
    out = depth_haze(clean, depth, np.random.default_rng(0), 1.0)  # beta = 1.8
    np.testing.assert_allclose(out[:, 0], clean[:, 0], atol=1e-6)
    airlight = (out[:, -1] - clean[:, -1] * np.exp(-1.8)) / (1 - np.exp(-1.8))
    assert 0.7 * 0.96 - 1e-4 <= airlight.min() and airlight.max() <= 1.0 + 1e-4
    assert np.all(np.diff(out[0, :, 0]) > 0)  # farther = hazier


def test_floored_haze_keeps_in_its_target_only_the_haze_under_the_floor() -> None:
    """Same input as plain haze; the target is the clean photo where t >= floor, and the input
    dehazed at the floor elsewhere: J' = A + (I - A) / floor, never the hidden scene itself."""
    clean = draw_city_scene(96, 128, seed=3)
    floor = 0.3
    lq, target = apply_pair("haze", clean, np.random.default_rng(5), 1.0, generators(2, haze_floor=floor))
    hazy, t, airlight = proxy_haze(clean, np.random.default_rng(5), 1.0)
    np.testing.assert_array_equal(lq, apply("haze", clean, np.random.default_rng(5), 1.0, generators(2)))
    np.testing.assert_array_equal(lq, hazy)
    seen, lost = t >= floor, t < floor * 0.5
    assert seen.any() and lost.any()  # the heaviest haze covers both
    np.testing.assert_allclose(target[seen], clean[seen], atol=1e-5)
    dehazed_at_floor = airlight + (hazy - airlight) / floor
    unclipped = lost & (hazy > 1e-3).all(axis=2) & (hazy < 1 - 1e-3).all(axis=2)
    np.testing.assert_allclose(target[unclipped], np.clip(dehazed_at_floor, 0, 1)[unclipped], atol=1e-4)
    assert np.abs(target[lost] - clean[lost]).mean() > 0.02


def test_generators_without_a_target_train_on_the_clean_photo() -> None:
    clean = draw_city_scene(32, 48, seed=1)
    for task in TASKS:
        lq, target = apply_pair(task, clean, np.random.default_rng(2), 0.7, generators(2))
        np.testing.assert_array_equal(lq, apply(task, clean, np.random.default_rng(2), 0.7, generators(2)))
        np.testing.assert_array_equal(target, clean)


@pytest.mark.parametrize("floor", [0.0, 1.0, -0.1])
def test_a_transmission_floor_outside_0_1_is_an_error(floor: float) -> None:
    with pytest.raises(ValueError, match="transmission floor"):
        FlooredHaze(floor)


def test_missing_or_bad_asset_folders_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        StreakBank.load(tmp_path / "nope")
    (tmp_path / "streaks").mkdir()
    with pytest.raises(DataError, match="no images.*streaks"):
        StreakBank.load(tmp_path / "streaks")
    (tmp_path / "streaks" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image.*bad.png"):
        StreakBank.load(tmp_path / "streaks")
    rgbd = tmp_path / "rgbd"
    (rgbd / "image").mkdir(parents=True)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(rgbd / "image" / "0000.jpg")
    with pytest.raises(DataError, match="depth.*not found|no images.*depth"):
        DepthBank.load(rgbd)
    (rgbd / "depth").mkdir()
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(rgbd / "depth" / "0002.png")
    with pytest.raises(DataError, match="no depth map for .*0000.jpg"):
        DepthBank.load(rgbd)


def test_camera_jpeg_is_8_bit_deterministic_and_worse_at_low_quality():
    from training.synth.camera import jpeg

    scene = draw_city_scene(64, 96, seed=2)
    high = jpeg(scene, np.random.default_rng(0), (95, 95))
    low = jpeg(scene, np.random.default_rng(0), (10, 10))
    assert high.shape == scene.shape and high.dtype == np.float32
    np.testing.assert_array_equal(
        jpeg(scene, np.random.default_rng(5), (10, 95)), jpeg(scene, np.random.default_rng(5), (10, 95))
    )
    assert np.abs(high - scene).mean() < np.abs(low - scene).mean()
    assert np.abs(low - scene).mean() > 0.005  # quality 10 visibly blocks
    with pytest.raises(ValueError, match="JPEG quality range"):
        jpeg(scene, np.random.default_rng(0), (50, 40))
