"""Training that does no harm (issue 30): flat regions painted into clean photos, the clear photos as
a clean source, identity under every prompt in stage 2, and the flat probe's no-prompt column."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from training.config import TrainConfig
from training.datasets import DataError, SyntheticWeather
from training.loops import PromptTuneStep, build_training_set
from training.scenes import draw_city_scene, to_uint8
from training.synth.flat import paint_flat_region
from training.weather_photos import is_dev

TASKS = ["rain", "raindrop", "haze", "snow"]


def test_painted_region_is_flat_and_levels_span_dark_to_bright():
    texture = draw_city_scene(96, 96, seed=1).astype(np.float32)
    levels, flat_shares = [], []
    for seed in range(40):
        out = paint_flat_region(texture, np.random.default_rng(seed))
        assert out.shape == texture.shape and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
        changed = np.abs(out - texture).max(axis=2) > 0.02
        flat_shares.append(changed.mean())
        rows, cols = np.nonzero(changed)
        region = out[rows.min() + 4 : rows.max() - 3, cols.min() + 4 : cols.max() - 3]
        if region.size:  # pixel to pixel, the painted field moves by noise only
            assert np.abs(np.diff(region, axis=1)).mean() < 0.02
            levels.append(region.mean())
    assert np.mean(flat_shares) > 0.3
    assert min(levels) < 0.35 and max(levels) > 0.75  # the probe's dark greys and bright skies
    again = paint_flat_region(texture, np.random.default_rng(7))
    assert np.array_equal(again, paint_flat_region(texture, np.random.default_rng(7)))


def test_flat_prob_paints_clean_photos_before_the_weather(tiny_clean_dir):
    plain = SyntheticWeather(tiny_clean_dir, TASKS, crop=32, length=16, clean_prob=0.5, seed=3)
    zero = SyntheticWeather(tiny_clean_dir, TASKS, crop=32, length=16, clean_prob=0.5, seed=3, flat_prob=0.0)
    painted = SyntheticWeather(tiny_clean_dir, TASKS, crop=32, length=16, clean_prob=0.5, seed=3, flat_prob=1.0)
    for i in range(16):
        assert torch.equal(plain[i]["lq"], zero[i]["lq"])  # off draws nothing: older mixtures unchanged
        item = painted[i]
        assert (item["task"] == len(TASKS)) == torch.equal(item["lq"], item["gt"])  # identity stays identity
    assert sum(not torch.equal(plain[i]["gt"], painted[i]["gt"]) for i in range(16)) >= 12


def clear_config(weather_photos: Path, tiny_clean_dir: Path, **data) -> TrainConfig:
    cfg = TrainConfig()
    options = {
        "clean_dir": str(tiny_clean_dir),
        "streaks_dir": "",
        "depth_dir": "",
        "real_pairs": [],
        "real_pair_weights": [],
        "crop": 24,
        "samples_per_epoch": 32,
        "clear_photos_dir": str(weather_photos),
        "clear_photos_weight": 1.0,
    }
    for key, value in (options | data).items():
        setattr(cfg.data, key, value)
    return cfg


def test_clear_photos_join_as_a_clean_source_from_the_train_split_only(weather_photos, tiny_clean_dir):
    cfg = clear_config(weather_photos, tiny_clean_dir, clear_photos_identity_prob=1.0)
    mix = build_training_set(cfg, TASKS)
    clear = mix.sources[1]
    assert isinstance(clear, SyntheticWeather) and len(mix.sources) == 2
    assert clear.files and all(p.parent.name == "clear" and not is_dev(p.name) for p in clear.files)
    assert len(clear.files) == 3  # the fixture's 3 train photos; its 2 dev photos never
    rng = np.random.default_rng(0)
    items = [clear.sample(rng) for _ in range(8)]
    assert all(torch.equal(it["lq"], it["gt"]) and it["task"] == len(TASKS) for it in items)
    weathered = build_training_set(clear_config(weather_photos, tiny_clean_dir, clear_photos_identity_prob=0.0), TASKS)
    items = [weathered.sources[1].sample(rng) for _ in range(8)]
    assert all(not torch.equal(it["lq"], it["gt"]) and it["task"] < len(TASKS) for it in items)


def test_haze_transmission_floor_changes_haze_targets_only(weather_photos, tiny_clean_dir):
    """data.haze_transmission_floor reaches the synthetic set: same inputs, and only haze rows get a
    target other than the clean crop (one that keeps the densest haze)."""
    plain = build_training_set(clear_config(weather_photos, tiny_clean_dir, clear_photos_weight=0.0), TASKS)
    floored = build_training_set(
        clear_config(weather_photos, tiny_clean_dir, clear_photos_weight=0.0, haze_transmission_floor=0.5), TASKS
    )
    changed = set()
    for i in range(32):
        a, b = plain[i], floored[i]
        assert torch.equal(a["lq"], b["lq"]) and a["task"] == b["task"]
        if not torch.equal(a["gt"], b["gt"]):
            changed.add(TASKS[b["task"]])
            assert (b["gt"] - a["gt"]).abs().max() > 1e-3
    assert changed == {"haze"}


def test_clear_photos_refuse_weather_folders(weather_photos, tiny_clean_dir):
    cfg = clear_config(weather_photos, tiny_clean_dir, clear_photos_folders=["clear", "fog"])
    with pytest.raises(DataError, match="fog"):
        build_training_set(cfg, TASKS)


def core_grads(identity_under_prompts: bool, identity_tasks: list[str] | None = None) -> dict[str, float]:
    """Size of each task core's gradient from a batch of clean rows only."""
    torch.manual_seed(0)
    model = make_tiny_model()
    model.freeze_for("prompt-tune")
    cfg = TrainConfig()
    cfg.loss.contrastive = False  # keys see detached vectors: prompts learn from restoration alone
    cfg.loss.identity_under_prompts = identity_under_prompts
    cfg.loss.identity_tasks = identity_tasks or []
    step = PromptTuneStep(model, torch.eye(len(model.tasks)), cfg)
    lq = torch.rand(16, 3, 32, 32)
    loss, pred, _ = step(lq, lq.clone(), torch.full((16,), len(model.tasks)))
    loss.backward()
    cores = model.prompts.cores
    return {t: 0.0 if cores[t].grad is None else float(cores[t].grad.abs().sum()) for t in model.tasks}


def test_identity_under_prompts_trains_every_prompt_on_clean_rows():
    assert sum(core_grads(False).values()) == 0.0  # clean rows: encoder only, as before
    assert all(g > 0.0 for g in core_grads(True).values())  # 16 rows: every task drawn


def test_identity_rows_use_only_the_named_tasks_prompts():
    grads = core_grads(True, ["haze", "snow"])
    assert grads["haze"] > 0 and grads["snow"] > 0 and grads["rain"] == 0 and grads["raindrop"] == 0
    with pytest.raises(ValueError, match="unknown tasks"):
        core_grads(True, ["fog"])


def test_flat_probe_reports_a_zero_prompt_column(tmp_path):
    from bench import flat_probe

    for folder in flat_probe.PHOTO_SETS.values():
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(2):
            image = to_uint8(draw_city_scene(48, 64, seed=i))
            Image.fromarray(image).save(tmp_path / "data" / folder / f"p{i}.png")
    save_weights(make_tiny_model().eval(), tmp_path / "tiny.safetensors")
    argv = ["--checkpoint", str(tmp_path / "tiny.safetensors"), "--quick", "--threads", "1"]
    report = flat_probe.main(argv + ["--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")])
    text = report.path.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| sky rows |"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["sky rows", "sky level", "no prompt", *TASKS]
    assert text.count("\n| 288 |") == 2  # --quick: the tall sky at two levels
