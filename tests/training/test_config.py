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
