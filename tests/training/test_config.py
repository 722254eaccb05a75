"""Config: defaults <- YAML <- command line; unknown keys are errors; saved config reloads."""

import pytest

from training.config import TrainConfig, load_config, save_config


def test_yaml_then_overrides(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("steps: 50\ndata:\n  crop: 96\n  paired: ['rain=/a']\nloss:\n  contrastive: false\n")
    cfg = load_config(preset, ["data.crop=64", "optim.betas=0.9,0.99", "prompt.mode=full"])
    assert cfg.steps == 50
    assert cfg.data.crop == 64
    assert cfg.data.paired == ["rain=/a"]
    assert cfg.loss.contrastive is False
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.prompt.mode == "full"


@pytest.mark.parametrize("bad", ["data.crpo=1", "nosuch=2"])
def test_unknown_keys_are_errors(bad):
    with pytest.raises(KeyError, match="unknown config key"):
        load_config(None, [bad])


def test_malformed_values_are_errors():
    with pytest.raises(ValueError):
        load_config(None, ["steps=many"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["steps"])
    with pytest.raises(ValueError, match="boolean"):
        load_config(None, ["loss.contrastive=maybe"])


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["seed=5", "data.lists=haze=/x", "optim.lr=0.0003"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert TrainConfig() != cfg


def test_a_file_extends_another_and_overrides_only_what_it_says(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 900\ndata:\n  crop: 96\n  batch_size: 4\noptim:\n  lr: 0.001\n")
    sub = tmp_path / "stages" / "short.yaml"
    sub.parent.mkdir()
    sub.write_text("extends: ../base.yaml\nsteps: 50\noptim:\n  lr: 0.0003\n")
    cfg = load_config(sub, ["data.batch_size=2"])
    assert (cfg.steps, cfg.data.crop, cfg.data.batch_size, cfg.optim.lr) == (50, 96, 2, 0.0003)


def test_config_files_that_extend_each_other_in_a_cycle_are_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nsteps: 1\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nsteps: 2\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_the_stage_1b_recipe_is_stage_1_with_its_own_schedule():
    from pathlib import Path

    recipe = Path(__file__).parents[2] / "configs" / "default"
    stage1, stage1b = load_config(recipe / "pretrain.yaml"), load_config(recipe / "pretrain-finetune.yaml")
    assert (stage1b.steps, stage1b.optim.lr, stage1b.optim.warmup_steps) == (5000, 0.0003, 100)
    assert (stage1b.data, stage1b.variant, stage1b.amp) == (stage1.data, stage1.variant, stage1.amp)
