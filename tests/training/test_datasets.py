"""Datasets: synthetic pairs, paired folders, AllWeather-style lists, and their errors."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training.config import TrainConfig
from training.data_root import data_path
from training.datasets import (
    DataError,
    DepthHaze,
    ListFile,
    PairedFolder,
    RainOnPhotos,
    SyntheticWeather,
    WeightedMix,
    parse_sources,
    split_clean,
)
from training.loops import build_training_set
from training.scenes import draw_city_scene, to_uint8
from training.synth import GENERATORS
from training.synth.assets import RainLayerBank

TASKS = ["rain", "raindrop", "haze", "snow"]


def test_synthetic_pairs_are_deterministic_and_labelled(tiny_clean_dir):
    ds = SyntheticWeather(tiny_clean_dir, TASKS, crop=32, length=16, clean_prob=0.25, seed=3)
    a, b = ds[5], ds[5]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert a["lq"].shape == (3, 32, 32) and a["lq"].dtype == torch.float32
    labels = [ds[i]["task"] for i in range(16)]
    assert set(labels) <= set(range(len(TASKS) + 1))
    for i in range(16):
        item = ds[i]
        assert (item["task"] == len(TASKS)) == torch.equal(item["lq"], item["gt"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["gt"], a["gt"]) or not torch.equal(ds[5]["lq"], a["lq"])


def test_train_and_val_split_are_disjoint(tiny_clean_dir):
    files = sorted(tiny_clean_dir.iterdir())
    train, val = split_clean(files, 4, "train"), split_clean(files, 4, "val")
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == files
    assert len(val) == 3


def test_paired_folder_whole_and_cropped(tiny_paired_dir):
    ds = PairedFolder(tiny_paired_dir, task_index=2)
    item = ds[0]
    assert item["lq"].shape == item["gt"].shape == (3, 72, 96)
    assert item["task"] == 2 and item["name"] == "p0.png"
    cropped = PairedFolder(tiny_paired_dir, task_index=2, crop=32)[1]
    assert cropped["lq"].shape == (3, 32, 32)


def test_paired_folder_errors_name_the_path(tmp_path, tiny_paired_dir):
    with pytest.raises(DataError, match="not found"):
        PairedFolder(tmp_path / "nope", 0)
    (tmp_path / "empty" / "input").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        PairedFolder(tmp_path / "empty", 0)
    broken = tmp_path / "broken"
    (broken / "input").mkdir(parents=True)
    (broken / "target").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "input" / "a.png")
    with pytest.raises(DataError, match="missing target.*a.png"):
        PairedFolder(broken, 0)
    (broken / "target" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        PairedFolder(broken, 0)[0]


def test_list_file_derives_targets(tmp_path):
    for sub in ("input", "gt"):
        (tmp_path / "allweather" / sub).mkdir(parents=True)
        Image.fromarray(np.full((20, 24, 3), 100, np.uint8)).save(tmp_path / "allweather" / sub / "im1.png")
    listing = tmp_path / "train.txt"
    listing.write_text("allweather/input/im1.png\n\n")
    ds = ListFile(listing, task_index=1)
    assert len(ds) == 1 and ds[0]["gt"].shape == (3, 20, 24)
    listing.write_text("allweather/input/missing.png\n")
    with pytest.raises(DataError, match="missing.png"):
        ListFile(listing, task_index=1)
    listing.write_text("")
    with pytest.raises(DataError, match="empty"):
        ListFile(listing, task_index=1)


def test_sources_reject_unknown_tasks():
    assert parse_sources(["haze=/d"], TASKS)[0][0] == 2
    with pytest.raises(DataError, match="unknown task 'fog'"):
        parse_sources(["fog=/d"], TASKS)
    with pytest.raises(DataError, match="task=PATH"):
        parse_sources(["/d"], TASKS)


def test_synthetic_rejects_unknown_generator(tiny_clean_dir):
    with pytest.raises(DataError, match="no synthetic generator"):
        SyntheticWeather(tiny_clean_dir, ["fog"], crop=32, length=4)


@pytest.fixture(scope="module")
def tiny_streaks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaks")
    for i in range(2):
        layer = np.zeros((40, 56), np.uint8)
        layer[:, 5 + 20 * i :: 17] = 200
        Image.fromarray(layer).save(folder / f"{i}-4.png")
    return folder


@pytest.fixture(scope="module")
def tiny_rgbd(tmp_path_factory):
    """image/ 64x48 photos (as NYU, 2x the depth maps) and depth/ 32x24 maps growing down the frame."""
    root = tmp_path_factory.mktemp("rgbd")
    (root / "image").mkdir()
    (root / "depth").mkdir()
    for i in range(3):
        Image.fromarray(to_uint8(draw_city_scene(48, 64, seed=50 + i))).save(root / "image" / f"{i:04d}.jpg")
        depth = np.tile(np.linspace(20, 200, 24)[:, None], (1, 32)).astype(np.uint8)  # farther down
        Image.fromarray(depth).save(root / "depth" / f"{i:04d}.png")
    return root


def streak_layer(h: int, w: int, seed: int) -> np.ndarray:
    """A gray additive rain layer in 0..1: bright slanted streaks over a faint veil."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    streaks = ((x + y // 3 + int(rng.integers(9))) % 9 == 0) * rng.uniform(0.3, 0.7)
    return (0.05 + streaks).astype(np.float32)


@pytest.fixture(scope="module")
def additive_rain_pairs(tmp_path_factory):
    """input = clip(target + S) as Rain100H is made; p1's sky is clipped white in every channel,
    p2 is clipped almost everywhere (too little rain is readable: left out)."""
    root = tmp_path_factory.mktemp("additive")
    (root / "input").mkdir()
    (root / "target").mkdir()
    for i in range(3):
        clean = draw_city_scene(48, 64, seed=200 + i)
        if i == 1:
            clean[:6] = 0.98  # a bright sky the rain clips
        if i == 2:
            clean[:] = 0.99
        rainy = np.clip(clean + streak_layer(48, 64, i)[..., None], 0, 1)
        Image.fromarray(to_uint8(clean)).save(root / "target" / f"p{i}.png")
        Image.fromarray(to_uint8(rainy)).save(root / "input" / f"p{i}.png")
    return root


def test_rain_layers_are_lifted_off_additive_pairs(additive_rain_pairs, tmp_path):
    bank = RainLayerBank.load(additive_rain_pairs)
    assert len(bank.layers) == 2  # p2, clipped over most of the photo, is left out
    for i, layer in enumerate(bank.layers):
        truth = streak_layer(48, 64, i)
        clean = np.asarray(Image.open(additive_rain_pairs / "target" / f"p{i}.png"), np.float32) / 255
        readable = (clean + truth[..., None] < 0.99).any(axis=-1)
        np.testing.assert_allclose(layer[readable], truth[readable], atol=1.5 / 255)  # 8-bit rounding
    # The clipped sky only bounds S below (1 - 0.98); it is filled with the veil and streaks
    # readable around it (mean ~0.075: the brightest streaks clip on bright walls too).
    sky = bank.layers[1][:6]
    assert sky.min() >= 0.02 - 1e-6 and 0.04 < sky.mean() < 0.1
    with pytest.raises(DataError, match="paired data folder not found.*gone"):
        RainLayerBank.load(tmp_path / "gone")
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    for name in ("input", "target"):
        Image.open(additive_rain_pairs / name / "p2.png").save(tmp_path / name / "p2.png")
    with pytest.raises(DataError, match="no usable rain-layer pairs"):
        RainLayerBank.load(tmp_path)


def test_rain_on_photos_adds_real_rain_to_clean_crops(additive_rain_pairs, tiny_clean_dir):
    bank = RainLayerBank.load(additive_rain_pairs)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(tiny_clean_dir.iterdir())[:3]]
    source = RainOnPhotos(bank, photos, task_index=0, crop=32)
    item = source.sample(np.random.default_rng(5))
    assert item["task"] == 0 and item["lq"].shape == item["gt"].shape == (3, 32, 32)
    assert torch.equal(source.sample(np.random.default_rng(5))["lq"], item["lq"])
    rain = item["lq"] - item["gt"]
    assert rain.min() >= 0 and rain.mean() > 0.05  # rain only adds light
    unclipped = (item["lq"] < 1).all(dim=0)
    assert (rain.amax(dim=0) - rain.amin(dim=0))[unclipped].max() < 1e-5  # gray, as in the pairs
    with pytest.raises(DataError, match="clean photos"):
        RainOnPhotos(bank, [], task_index=0, crop=32)


def test_rain_layer_weight_adds_the_source(
    tiny_clean_dir, tiny_paired_dir, tiny_streaks, tiny_rgbd, additive_rain_pairs
):
    cfg = v2_config(
        tiny_clean_dir,
        tiny_streaks,
        tiny_rgbd,
        tiny_paired_dir,
        rain_layers_dir=str(additive_rain_pairs),
        rain_layer_weight=0.3,
    )
    mix = build_training_set(cfg, TASKS)
    assert [type(s).__name__ for s in mix.sources] == ["SyntheticWeather", "DepthHaze", "RainOnPhotos", "PairedFolder"]
    assert mix.sources[2].images is mix.sources[0].images  # the photos are decoded once
    np.testing.assert_allclose(mix.probs, np.array([1.0, 0.12, 0.3, 0.5]) / 1.92)


def v2_config(clean_dir, streaks, rgbd, paired, **data):
    cfg = TrainConfig()
    cfg.seed = 4
    options = {
        "clean_dir": str(clean_dir),
        "streaks_dir": str(streaks),
        "depth_dir": str(rgbd),
        "crop": 24,
        "samples_per_epoch": 64,
        "real_pairs": [f"rain={paired}"],
        "real_pair_weights": [0.5],
    }
    for key, value in (options | data).items():
        setattr(cfg.data, key, value)
    return cfg


def test_depth_haze_is_hazier_where_farther(tiny_rgbd):
    ds = DepthHaze(tiny_rgbd, task_index=2, crop=24, length=8, severity=(1.0, 1.0), seed=1)
    item = ds[0]
    assert item["lq"].shape == item["gt"].shape == (3, 24, 24) and item["task"] == 2
    assert torch.equal(ds[0]["lq"], item["lq"])
    hazed = (item["lq"] - item["gt"]).abs().mean(dim=(0, 2))  # per row; crops flip only left-right
    assert hazed[-4:].mean() > hazed[:4].mean() + 0.02


def test_weighted_mix_is_deterministic_and_weighted(tiny_clean_dir, tiny_paired_dir):
    synthetic = SyntheticWeather(tiny_clean_dir, TASKS[:2], crop=24, length=10, seed=3)  # tasks 0, 1, clean 2
    paired = PairedFolder(tiny_paired_dir, task_index=3, crop=24)
    mix = WeightedMix([synthetic, paired], [1.0, 3.0], length=200, seed=7)
    a, b = mix[11], mix[11]
    assert torch.equal(a["lq"], b["lq"]) and a["task"] == b["task"]
    assert set(a) == {"lq", "gt", "task"} and a["lq"].shape == (3, 24, 24)
    from_pairs = sum(mix[i]["task"] == 3 for i in range(200))
    assert 130 <= from_pairs <= 170  # 3/4 of 200; binomial sd 6
    mix.set_epoch(1)
    assert synthetic.epoch == 1
    assert not torch.equal(mix[11]["gt"], a["gt"])
    with pytest.raises(ValueError, match="one weight per source"):
        WeightedMix([synthetic], [1.0, 2.0], length=4)
    with pytest.raises(ValueError, match="positive sum"):
        WeightedMix([synthetic], [0.0], length=4)


def test_jpeg_share_compresses_inputs_only_and_zero_changes_nothing(
    tiny_clean_dir, tiny_paired_dir, tiny_streaks, tiny_rgbd
):
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir)
    plain = build_training_set(cfg, TASKS)
    cfg.data.jpeg_prob, cfg.data.jpeg_quality_min, cfg.data.jpeg_quality_max = 1.0, 20, 30
    compressed = build_training_set(cfg, TASKS)
    for i in range(6):
        a, b = plain[i], compressed[i]
        assert torch.equal(a["gt"], b["gt"]) and a["task"] == b["task"]  # same draw, targets untouched
        assert not torch.equal(a["lq"], b["lq"])
        np.testing.assert_allclose(b["lq"].numpy() * 255, np.round(b["lq"].numpy() * 255), atol=1e-3)  # 8-bit
        assert torch.equal(compressed[i]["lq"], b["lq"])  # deterministic
    cfg.data.jpeg_quality_min = 0
    with pytest.raises(ValueError, match="JPEG quality range"):
        build_training_set(cfg, TASKS)


def test_v2_training_mixture_has_every_source(tiny_clean_dir, tiny_paired_dir, tiny_streaks, tiny_rgbd):
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir)
    mix = build_training_set(cfg, TASKS)
    assert isinstance(mix, WeightedMix)
    assert [type(s).__name__ for s in mix.sources] == ["SyntheticWeather", "DepthHaze", "PairedFolder"]
    np.testing.assert_allclose(mix.probs, np.array([1.0, 0.12, 0.5]) / 1.62)
    loader = DataLoader(mix, batch_size=8, num_workers=1)
    batch = next(iter(loader))
    assert batch["lq"].shape == (8, 3, 24, 24) and batch["task"].max() <= len(TASKS)
    assert torch.equal(batch["lq"][3], mix[3]["lq"])  # workers draw what the main process would


def test_v1_switch_is_todays_concatenation(tiny_clean_dir, tiny_paired_dir, tiny_streaks, tiny_rgbd):
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir, synth_version=1)
    ds = build_training_set(cfg, TASKS)
    assert isinstance(ds, SyntheticWeather) and len(ds) == 64  # real pairs and depth haze are v2 only
    same = SyntheticWeather(tiny_clean_dir, TASKS, crop=24, length=64, seed=4, generators=GENERATORS)
    for i in (0, 5, 9):
        assert torch.equal(ds[i]["lq"], same[i]["lq"]) and ds[i]["task"] == same[i]["task"]


def test_v2_bad_folders_name_the_path(tiny_clean_dir, tiny_paired_dir, tiny_streaks, tiny_rgbd, tmp_path):
    for key, message in (("streaks_dir", "rain-streak folder not found"), ("depth_dir", "depth data folder not found")):
        cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir, **{key: str(tmp_path / "gone")})
        with pytest.raises(DataError, match=f"{message}.*gone"):
            build_training_set(cfg, TASKS)
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tmp_path / "no-pairs")
    with pytest.raises(DataError, match="paired data folder not found.*no-pairs"):
        build_training_set(cfg, TASKS)
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir, real_pair_weights=[0.1, 0.2])
    with pytest.raises(DataError, match="one weight per data.real_pairs entry"):
        build_training_set(cfg, TASKS)
    cfg = v2_config(tiny_clean_dir, tiny_streaks, tiny_rgbd, tiny_paired_dir, synth_version=3)
    with pytest.raises(ValueError, match="synth_version must be 1 or 2"):
        build_training_set(cfg, TASKS)


def test_default_config_points_at_the_shared_data():
    d = TrainConfig().data
    assert d.synth_version == 2
    assert d.streaks_dir == data_path("rain-streaks") and d.depth_dir == data_path("rgbd-indoor")
    assert d.real_pairs == [f"rain={data_path('train', 'rain-heavy')}", f"raindrop={data_path('train', 'raindrop')}"]
    if "TAP_DATA" not in os.environ:
        assert d.clean_dir == "../shared/data/clean"  # relative to the repository root, as configs have it
    assert len(d.real_pair_weights) == len(d.real_pairs)
