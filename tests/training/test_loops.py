"""The training stages on a tiny config: what trains, what stays frozen, resume, determinism, DDP."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from contract.classifier_view import LONGER_SIDE, PATCHES, ClassifierView
from model.checkpoint import load_model, save_weights
from model.net import NET_VARIANTS, TAPNet
from training.cli import main as tap_train
from training.config import ClassifierConfig, load_config
from training.loops import (
    add_task,
    classifier_views,
    invisible_weather,
    pretrain,
    prompt_tune,
    tune_classifier,
    with_fresh_prompts,
)
from training.reuse_classifier import reuse_classifier
from training.train_state import load_train_state, save_train_state

REPO = Path(__file__).resolve().parents[2]


# No streak layers, depth maps or real pairs: the defaults read them from the shared data, which
# the loops under test do not need (and a clone away from ../shared does not have).
PROCEDURAL_WEATHER_ONLY = ("data.streaks_dir=", "data.depth_dir=", "data.real_pairs=", "data.real_pair_weights=")


def tiny_overrides(clean_dir: Path, steps: int = 4) -> list[str]:
    return [
        "variant=tiny",
        f"steps={steps}",
        "data.crop=32",
        "classifier.train_view=16",
        "data.batch_size=4",
        "data.workers=0",
        "data.samples_per_epoch=16",
        f"data.clean_dir={clean_dir}",
        *PROCEDURAL_WEATHER_ONLY,
        "log_every=1",
        "save_every=2",
        "optim.warmup_steps=1",
        "loss.relatedness_batches=1",
        "prompt.tokens=4",
        "prompt.rank=4",
    ]


@pytest.fixture(scope="module")
def pretrained(tiny_clean_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    pretrain(load_config(None, tiny_overrides(tiny_clean_dir)), out)
    return out


@pytest.fixture(scope="module")
def prompt_tuned(pretrained, tiny_clean_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prompt")
    cfg = load_config(None, tiny_overrides(tiny_clean_dir) + [f"init={pretrained / 'model.safetensors'}"])
    prompt_tune(cfg, out)
    return out


def test_stage_1_seeded_from_prompt_tuned_weights_keeps_the_backbone_and_resets_the_prompts(
    prompt_tuned, tiny_clean_dir, tmp_path
):
    """init= a stage-2 checkpoint (or a bundle's weights): stage 1 trains under the zero prompt, so
    the trained prompt levels must go back to the identity, or the backbone would learn around them."""
    tuned = load_model(prompt_tuned / "model.safetensors")[0].eval()
    x, zero = torch.rand(1, 3, 32, 32), torch.zeros(1, tuned.prompt_dim)
    seeded = with_fresh_prompts(tuned).eval()
    plain = TAPNet(tuned.cfg).eval()
    plain.load_state_dict({k: v for k, v in tuned.state_dict().items() if k.startswith("backbone.")}, strict=False)
    with torch.no_grad():
        assert not torch.allclose(tuned(x, zero), plain(x, zero))  # trained prompt levels act on a zero prompt
        assert torch.equal(seeded(x, zero), plain(x, zero))
    cfg = load_config(None, tiny_overrides(tiny_clean_dir, steps=2) + [f"init={prompt_tuned / 'model.safetensors'}"])
    trained = pretrain(cfg, tmp_path).eval()
    assert changed(trained, tuned) & {k for k in tuned.state_dict() if k.startswith("backbone.")}  # it trained
    after = TAPNet(tuned.cfg).eval()
    after.load_state_dict({k: v for k, v in trained.state_dict().items() if k.startswith("backbone.")}, strict=False)
    with torch.no_grad():
        assert torch.equal(trained(x, zero), after(x, zero))  # still the identity prompt path


def changed(a: TAPNet, b: TAPNet) -> set[str]:
    sb = b.state_dict()
    return {k for k, v in a.state_dict().items() if k in sb and not torch.equal(v, sb[k])}


def test_pretrain_trains_the_backbone_only(pretrained):
    torch.manual_seed(0)
    fresh = TAPNet(NET_VARIANTS["tiny"])
    trained, extra = load_model(pretrained / "model.safetensors")
    diff = changed(fresh, trained)
    assert diff and all(k.startswith("backbone.") for k in diff)
    assert extra["stage"] == "pretrain" and extra["step"] == 4
    assert (pretrained / "config.yaml").is_file()
    rows = (pretrained / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == ["step", "lr", "loss", "psnr", "img_s"]
    assert len(rows) == 5


def test_prompt_tune_keeps_the_backbone_frozen(pretrained, prompt_tuned):
    before, _ = load_model(pretrained / "model.safetensors")
    after, extra = load_model(prompt_tuned / "model.safetensors")
    backbone = {k for k in after.state_dict() if k.startswith("backbone.")}
    assert not changed(before, after) & backbone
    assert after.cfg.prompt_tokens == 4 and after.cfg.prompt_rank == 4
    relatedness = json.loads((prompt_tuned / "relatedness.json").read_text())
    assert relatedness["tasks"] == after.tasks
    r = torch.tensor(relatedness["R"])
    assert r.shape == (4, 4) and torch.allclose(r.diagonal(), torch.ones(4), atol=1e-3)
    assert extra["relatedness"] == relatedness
    header = (prompt_tuned / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"nce", "acc", "rel"} <= set(header)


def test_add_task_changes_no_other_output_by_a_single_bit(prompt_tuned, tiny_paired_dir, tiny_clean_dir, tmp_path):
    base, _ = load_model(prompt_tuned / "model.safetensors")
    # Same inference regime for both: CPU conv kernels differ in the last bit with requires_grad.
    base.eval().requires_grad_(False)
    cfg = load_config(None, tiny_overrides(tiny_clean_dir, steps=3) + [f"init={prompt_tuned / 'model.safetensors'}"])
    grown = add_task(cfg, tmp_path, "dust", [tiny_paired_dir])
    assert grown.tasks == [*base.tasks, "dust"]
    lq = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        for task in base.tasks:
            assert torch.equal(base(lq, base.prompt_for([task] * 2)), grown(lq, grown.prompt_for([task] * 2)))
        assert torch.equal(base.embed(lq), grown.embed(lq))
    assert not torch.equal(grown.prompts.cores["dust"], base.task_vectors().mean(0))
    assert (tmp_path / "prompts" / "dust.safetensors").is_file()
    reloaded, _ = load_model(tmp_path / "model.safetensors")
    assert reloaded.classes[-2:] == ["dust", "clean"]


def test_tune_core_retunes_one_weather_and_leaves_the_others_bit_identical(
    prompt_tuned, tiny_paired_dir, tiny_clean_dir, tmp_path
):
    base, _ = load_model(prompt_tuned / "model.safetensors")
    base.eval().requires_grad_(False)
    cfg = load_config(None, tiny_overrides(tiny_clean_dir, steps=3) + [f"init={prompt_tuned / 'model.safetensors'}"])
    tuned = add_task(cfg, tmp_path, "rain", [tiny_paired_dir], existing=True)
    assert tuned.tasks == base.tasks
    assert not torch.equal(tuned.prompts.cores["rain"], base.prompts.cores["rain"])
    lq = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        for task in set(base.tasks) - {"rain"}:
            assert torch.equal(base(lq, base.prompt_for([task])), tuned(lq, tuned.prompt_for([task])))
    with pytest.raises(KeyError, match="has no task 'dust'"):
        add_task(cfg, tmp_path / "x", "dust", [tiny_paired_dir], existing=True)


def test_add_task_from_a_generator(prompt_tuned, tiny_clean_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_clean_dir, steps=2) + [f"init={prompt_tuned / 'model.safetensors'}"])
    grown = add_task(cfg, tmp_path, "fog", [], generator="training.synth.v1.haze:haze")
    assert grown.tasks[-1] == "fog"


def test_training_is_deterministic_on_cpu(tiny_clean_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        pretrain(load_config(None, tiny_overrides(tiny_clean_dir, steps=3)), tmp_path / name)
        runs.append(load_model(tmp_path / name / "model.safetensors")[0])
    assert not changed(*runs)


def test_resume_continues_from_the_saved_step(tiny_clean_dir, tmp_path):
    pretrain(load_config(None, tiny_overrides(tiny_clean_dir, steps=2)), tmp_path)
    pretrain(load_config(None, tiny_overrides(tiny_clean_dir, steps=4)), tmp_path, resume=True)
    _, extra = load_model(tmp_path / "model.safetensors")
    assert extra["step"] == 4
    steps = [int(r.split(",")[0]) for r in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


def test_train_state_round_trip(tmp_path):
    param = torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.AdamW([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))
    for _ in range(3):
        param.grad = torch.randn(5)
        opt.step()
        sched.step()
    save_train_state(tmp_path / "s.safetensors", opt, sched, step=3)
    expected = torch.rand(3)
    opt2 = torch.optim.AdamW([torch.nn.Parameter(param.detach().clone())], lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1 / (s + 1))
    assert load_train_state(tmp_path / "s.safetensors", opt2, sched2) == 3
    assert torch.equal(torch.rand(3), expected)  # torch RNG restored to its saved state
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == sched.last_epoch


def test_cli_errors_are_clear(tmp_path, capsys, pretrained):
    args = ["pretrain", "--out", str(tmp_path / "x"), "data.clean_dir=/nonexistent", "variant=tiny"]
    assert tap_train([*args, *PROCEDURAL_WEATHER_ONLY]) == 2
    assert "data folder not found: /nonexistent" in capsys.readouterr().err
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign))
    assert tap_train(["prompt-tune", "--init", str(foreign), "--out", str(tmp_path / "y")]) == 2
    assert "not a tap-restore checkpoint" in capsys.readouterr().err
    ckpt = str(pretrained / "model.safetensors")
    assert tap_train(["evaluate", ckpt, "--out", str(tmp_path / "e"), "--paired", "fog=/d"]) == 2
    assert "unknown task 'fog'" in capsys.readouterr().err


def test_model_info_prints_the_budget(capsys):
    assert tap_train(["model-info"]) == 0
    out = capsys.readouterr().out
    assert "backbone" in out and "degradation encoder" in out
    # the two budgets apart: TAP's restoration network and the auto-mode classifier's own
    assert "budget, restoration network (backbone + prompts): 2,478,483 of 2,750,000 (within)" in out
    assert "budget, auto-mode classifier (encoder + keys): 196,192 of 1,000,000 (within)" in out


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(tiny_clean_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training.cli",
        "pretrain",
        "--out",
        str(tmp_path),
        *tiny_overrides(tiny_clean_dir, steps=3),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checksums = json.loads((tmp_path / "replica_checksums.json").read_text())
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    _, extra = load_model(tmp_path / "model.safetensors")
    assert extra["step"] == 3


def test_add_task_generator_does_not_leak_into_the_registry():
    from training import synth

    assert "fog" not in synth.GENERATORS


def test_tune_classifier_changes_only_the_classifier(prompt_tuned, tiny_clean_dir, tmp_path):
    base, _ = load_model(prompt_tuned / "model.safetensors")
    base.eval().requires_grad_(False)
    cfg = load_config(None, tiny_overrides(tiny_clean_dir, steps=3) + [f"init={prompt_tuned / 'model.safetensors'}"])
    tuned = tune_classifier(cfg, tmp_path)
    diff = changed(base, tuned)
    assert diff and all(k.startswith(("encoder.", "keys.")) for k in diff)
    lq = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(base(lq, base.prompt_for(["rain", "haze"])), tuned(lq, tuned.prompt_for(["rain", "haze"])))
    assert "acc" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    # the view it trained for travels with the weights (export writes it into the manifest)
    assert tuned.cfg.view == ClassifierView(LONGER_SIDE, cfg.classifier.view_size)
    assert load_model(tmp_path / "model.safetensors")[0].cfg.view == tuned.cfg.view


def test_tune_classifier_saves_a_patch_view_and_refuses_an_unknown_one(prompt_tuned, tiny_clean_dir, tmp_path):
    init = [f"init={prompt_tuned / 'model.safetensors'}"]
    patches = ["classifier.view_mode=patches", "classifier.view_size=24", "classifier.max_side=96"]
    tuned = tune_classifier(load_config(None, tiny_overrides(tiny_clean_dir, steps=1) + patches + init), tmp_path)
    assert load_model(tmp_path / "model.safetensors")[0].cfg.view == ClassifierView(PATCHES, 24, 96) == tuned.cfg.view
    unknown = load_config(None, tiny_overrides(tiny_clean_dir, steps=1) + ["classifier.view_mode=tiles"] + init)
    with pytest.raises(ValueError, match="unknown classifier view 'tiles'"):
        tune_classifier(unknown, tmp_path / "unknown")


def test_tune_classifier_can_train_a_deeper_encoder_that_exports(prompt_tuned, tiny_clean_dir, tmp_path, capsys):
    import onnxruntime as ort

    from training.export import export_classifier

    base, _ = load_model(prompt_tuned / "model.safetensors")
    overrides = tiny_overrides(tiny_clean_dir, steps=3) + ["classifier.encoder_blocks=1,2"]
    tuned = tune_classifier(load_config(None, overrides + [f"init={prompt_tuned / 'model.safetensors'}"]), tmp_path)
    assert tuned.cfg.encoder_blocks == (1, 2)
    assert sum(p.numel() for p in tuned.encoder.parameters()) > sum(p.numel() for p in base.encoder.parameters())
    reloaded = load_model(tmp_path / "model.safetensors")[0].eval()
    assert reloaded.cfg.encoder_blocks == (1, 2)
    lq = torch.rand(2, 3, 40, 56)
    with torch.no_grad():  # restoration untouched; the saved encoder is the trained one
        assert torch.equal(base(lq, base.prompt_for(["rain"] * 2)), reloaded(lq, reloaded.prompt_for(["rain"] * 2)))
        ref = reloaded.classify(lq)
    export_classifier(reloaded, tmp_path / "classifier.onnx")
    session = ort.InferenceSession(str(tmp_path / "classifier.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": lq.numpy()})[0]
    assert float((ref - torch.from_numpy(got)).abs().max()) < 1e-4
    # model-info counts the trained model as saved, deeper encoder included
    assert tap_train(["model-info", "--checkpoint", str(tmp_path / "model.safetensors")]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    printed = next(int(words[1].replace(",", "")) for words in lines if words and words[0] == "total")
    assert printed == sum(p.numel() for p in reloaded.parameters())


def test_tune_classifier_refuses_views_larger_than_the_crop(prompt_tuned, tiny_clean_dir, tmp_path):
    overrides = tiny_overrides(tiny_clean_dir, steps=1) + ["classifier.train_view=48"]
    cfg = load_config(None, overrides + [f"init={prompt_tuned / 'model.safetensors'}"])
    with pytest.raises(ValueError, match="classifier.train_view"):
        tune_classifier(cfg, tmp_path)


def test_classifier_views_crop_the_same_square_from_lq_and_gt():
    torch.manual_seed(0)
    gt = torch.rand(6, 3, 64, 64)
    lq = gt + 0.25
    view = ClassifierConfig(train_view=24, max_shrink=2.0)
    views, clean_views = classifier_views(lq, gt, view)
    assert views.shape == clean_views.shape == (6, 3, 24, 24)
    torch.testing.assert_close(views, clean_views + 0.25)  # same region, same resize
    # no shrink: exact sub-squares of the crop
    exact, _ = classifier_views(lq, gt, ClassifierConfig(train_view=24, max_shrink=1.0))
    assert any(torch.equal(exact[0], lq[0, :, t : t + 24, x : x + 24]) for t in range(41) for x in range(41))


def test_weather_that_vanishes_in_the_view_is_labelled_clean():
    """A view equal to its clean view is a clean crop or a real photo without a clean reference
    (LabelledPhotos): its label stands."""
    gt = torch.rand(3, 3, 16, 16)
    faint = gt + 0.001  # 60 dB: invisible
    strong = gt + 0.2  # 14 dB
    lq = torch.stack([faint[0], strong[1], gt[2]])
    assert invisible_weather(lq, gt, 30.0).tolist() == [True, False, False]


def test_a_dataset_smaller_than_a_batch_still_gives_full_batches(tiny_paired_dir, tiny_clean_dir):
    """4 real pairs and batch 8: drawn with replacement (random crops), never an empty epoch."""
    from training.datasets import PairedFolder
    from training.distributed import World
    from training.loops import make_loader

    cfg = load_config(None, tiny_overrides(tiny_clean_dir) + ["data.batch_size=8", "data.samples_per_epoch=32"])
    loader = make_loader(PairedFolder(tiny_paired_dir, 0, crop=16), cfg, World(rank=0, size=1, local_rank=0))
    sizes = [len(batch["lq"]) for batch in loader]
    assert sizes == [8, 8, 8, 8]


def test_reuse_classifier_keeps_the_decisions_and_the_new_restoration(
    prompt_tuned, pretrained, tiny_clean_dir, tmp_path
):
    tiny = tiny_overrides(tiny_clean_dir, steps=3)
    donor_cfg = ["classifier.encoder_blocks=1,2", "classifier.view_mode=patches", "classifier.view_size=24"]
    donor = tune_classifier(
        load_config(None, tiny + donor_cfg + [f"init={prompt_tuned / 'model.safetensors'}"]), tmp_path / "donor"
    )
    calibration = {"classifier_temperature": 0.7, "auto_clean_threshold": 0.25, "auto_min_weather_prob": 0.4}
    donor.cfg = replace(donor.cfg, **calibration)  # as tap-train calibrate leaves it
    save_weights(donor, tmp_path / "donor" / "model.safetensors")
    retuned = prompt_tune(
        load_config(None, tiny + ["seed=1", f"init={pretrained / 'model.safetensors'}"]), tmp_path / "retuned"
    )
    assert not torch.allclose(retuned.prompts.task_vectors(), donor.prompts.task_vectors())
    args = [
        str(tmp_path / "retuned" / "model.safetensors"),
        "--classifier",
        str(tmp_path / "donor" / "model.safetensors"),
    ]
    assert tap_train(["reuse-classifier", *args, "--out", str(tmp_path / "both")]) == 0
    both = load_model(tmp_path / "both" / "model.safetensors")[0].eval()
    assert both.cfg.encoder_blocks == (1, 2) and both.cfg.view == donor.cfg.view
    assert both.cfg.auto_rule == donor.cfg.auto_rule and both.cfg.classifier_temperature == 0.7  # calibration too
    lq = torch.rand(3, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(both.classify(lq), donor.eval().classify(lq), atol=1e-4)  # same decisions
        prompts = ["rain", "haze", "snow"]
        restored = load_model(tmp_path / "retuned" / "model.safetensors")[0].eval()
        assert torch.equal(both(lq, both.prompt_for(prompts)), restored(lq, restored.prompt_for(prompts)))
    more = load_model(tmp_path / "retuned" / "model.safetensors")[0]
    more.add_task("fog")
    with pytest.raises(ValueError, match="differs in \\['tasks'\\]"):
        reuse_classifier(more, donor)
