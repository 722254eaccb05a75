"""The TAP network: shapes, parameter budget, prompts and per-stage trainable sets."""

import json

import numpy as np
import pytest
import torch

from contract.classifier_view import SQUARE, ClassifierView
from model.checkpoint import CheckpointError, load_model, save_weights
from model.net import NET_VARIANTS, NetConfig, TAPNet, mirror_pad
from service import tiling
from tests.conftest import make_tiny_model


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 16, 16), (3, 3, 1, 1), (1, 3, 70, 33)])
def test_any_size_keeps_its_shape(shape):
    model = make_tiny_model()
    lq = torch.rand(shape)
    with torch.no_grad():
        pred = model(lq, model.prompt_for(["rain"] * shape[0]))
    assert pred.shape == lq.shape
    assert torch.isfinite(pred).all()


@pytest.mark.parametrize("h,w", [(1, 1), (5, 3), (17, 31), (16, 32), (321, 481)])
def test_mirror_pad_is_symmetric_reflection_to_the_stride(h, w):
    image = torch.rand(2, 3, h, w)
    padded = mirror_pad(image, 16)
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (0, -h % 16), (0, -w % 16)), mode="symmetric")
    np.testing.assert_array_equal(padded.numpy(), expected)


def test_service_tiles_are_padded_as_the_backbone_pads():
    image = np.random.default_rng(0).random((3, 21, 7), dtype=np.float32)
    backbone = mirror_pad(torch.from_numpy(image)[None], 16)[0].numpy()
    np.testing.assert_array_equal(tiling.pad_to(image, 32, 16), backbone)


def test_default_model_within_parameter_budget():
    model = TAPNet(NET_VARIANTS["default"])
    budget = model.parameter_budget()
    assert model.tasks == ["rain", "raindrop", "haze", "snow"]
    assert budget["total"] == sum(p.numel() for p in model.parameters())
    assert budget["total"] <= 2_750_000
    assert model.prompt_dim <= 0.005 * budget["total"]
    parts = ["backbone", "task-general prompt factors", "task cores (all tasks)", "degradation encoder + keys"]
    assert sum(budget[p] for p in parts) == budget["total"]


def test_different_prompts_give_different_outputs():
    model = make_tiny_model()
    lq = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        outs = [model(lq, model.prompt_for([t])) for t in model.tasks]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().max() > 1e-4


def test_batch_mixes_prompts_and_matches_single_images():
    model = make_tiny_model()
    lq = torch.rand(3, 3, 40, 24)
    tasks = ["snow", "rain", "haze"]
    with torch.no_grad():
        batched = model(lq, model.prompt_for(tasks))
        single = torch.cat([model(lq[i : i + 1], model.prompt_for([t])) for i, t in enumerate(tasks)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_mixture_of_prompt_vectors_is_a_valid_prompt():
    model = make_tiny_model()
    lq = torch.rand(1, 3, 32, 32)
    rain, haze = model.prompt_for(["rain"]), model.prompt_for(["haze"])
    with torch.no_grad():
        mixed = model(lq, 0.5 * rain + 0.5 * haze)
        pure = [model(lq, rain), model(lq, haze)]
    assert mixed.shape == lq.shape
    assert all((mixed - p).abs().max() > 1e-5 for p in pure)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown task"):
        make_tiny_model().prompt_for(["fog"])


def test_classifier_covers_tasks_and_clean():
    model = make_tiny_model()
    assert model.classes == ["rain", "raindrop", "haze", "snow", "clean"]
    assert model.classify(torch.rand(2, 3, 64, 80)).shape == (2, 5)


def trainable(model: TAPNet, stage: str, task: str | None = None) -> set[str]:
    model.freeze_for(stage, task)
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_stage_trainable_sets_are_exactly_as_stated():
    model = make_tiny_model()
    names = {name for name, _ in model.named_parameters()}
    backbone = {n for n in names if n.startswith("backbone.")}
    assert trainable(model, "pretrain") == backbone
    prompt_tune = trainable(model, "prompt-tune")
    assert prompt_tune == names - backbone
    assert {f"prompts.cores.{t}" for t in model.tasks} <= prompt_tune
    assert any(n.startswith("prompts.levels.") and n.endswith("basis_u") for n in prompt_tune)
    assert any(n.startswith("encoder.") for n in prompt_tune)
    classifier = trainable(model, "classifier")
    assert classifier == {n for n in names if n.startswith(("encoder.", "keys."))} and classifier
    model.add_task("sandstorm")
    assert trainable(model, "add-task", "sandstorm") == {"prompts.cores.sandstorm"}
    with pytest.raises(ValueError, match="unknown stage"):
        model.freeze_for("finetune")


def test_added_task_gets_a_class_and_a_prompt():
    model = make_tiny_model()
    model.add_task("sandstorm")
    assert model.classes[-2:] == ["sandstorm", "clean"]
    assert model.cfg.tasks[-1] == "sandstorm"
    assert model.classify(torch.rand(1, 3, 32, 32)).shape == (1, 6)
    with pytest.raises(ValueError, match="already exists"):
        model.add_task("rain")


def test_full_rank_mode_builds_dense_task_prompts():
    from dataclasses import replace

    model = TAPNet(replace(NET_VARIANTS["tiny"], prompt_mode="full", prompt_tokens=3))
    channels = model.backbone.level_channels(model.cfg)
    assert model.prompt_dim == 3 * sum(channels)
    assert model(torch.rand(2, 3, 20, 20), model.prompt_for(["rain", "snow"])).shape == (2, 3, 20, 20)


def test_checkpoint_round_trip_and_architecture_mismatch(tmp_path):
    model = make_tiny_model(seed=3)
    path = tmp_path / "model.safetensors"
    save_weights(model, path, {"step": 7})
    loaded, extra = load_model(path)
    assert extra == {"step": 7}
    assert loaded.cfg == model.cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = TAPNet(NetConfig(**{**NET_VARIANTS["tiny"].to_dict(), "width": 4}))
    from safetensors.torch import load_file

    from model.checkpoint import load_state

    with pytest.raises(CheckpointError, match="does not match this architecture"):
        load_state(other, load_file(str(path)), path)


def test_not_a_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a tap-restore checkpoint"):
        load_model(path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")


def test_architecture_1_checkpoints_still_load(tmp_path):
    """Checkpoints written before `arch` existed rebuild the first architecture, weights and all."""
    from dataclasses import replace

    torch.manual_seed(1)
    old = TAPNet(replace(NET_VARIANTS["tiny"], arch=1)).eval()
    path = tmp_path / "v1.safetensors"
    save_weights(old, path)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    net = json.loads(meta["net"])
    for key in ("arch", "full_res_width", "classifier_view", "classifier_size"):
        del net[key]  # as the first bundled model's checkpoint has it
    save_file(load_file(str(path)), str(path), metadata=meta | {"net": json.dumps(net)})
    loaded, _ = load_model(path)
    assert loaded.cfg.arch == 1
    assert loaded.cfg.view == ClassifierView(SQUARE, 128)  # the view its classifier was trained on
    lq = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lq, loaded.prompt_for(["rain"])), old(lq, old.prompt_for(["rain"])))


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture 3"):
        NetConfig(arch=3)


def test_unknown_classifier_view_is_refused():
    with pytest.raises(ValueError, match="unknown classifier view 'crop'"):
        NetConfig(classifier_view="crop")


def flat_output_ripple(arch: int) -> float:
    """Largest per-channel spatial std of the output over the interior of a constant grey image."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = TAPNet(replace(NET_VARIANTS["tiny"], arch=arch)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma", "scale")):
                p.normal_(0.0, 0.2)
        out = model(torch.full((1, 3, 160, 160), 0.5), model.prompt_for(["haze"]))
    return float(out[..., 64:96, 64:96].std(dim=(-2, -1)).max())


def test_flat_input_gives_flat_output_without_a_stride_grid():
    """Architecture 2 has no phase-dependent upsampling and no global op: a flat region stays
    flat whatever the weights. Architecture 1's pixel shuffle prints a pattern into it."""
    assert flat_output_ripple(arch=2) < 1e-6
    assert flat_output_ripple(arch=1) > 1e-3
