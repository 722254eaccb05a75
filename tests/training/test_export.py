"""ONNX export and the artifact bundle: parity with torch, fp16, Triton, and verification."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contract.bundle import BundleError, load_bundle, load_prompts, write_prompt
from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from training.cli import main as tap_train
from training.export import BackboneGraph, ClassifierGraph, export_bundle


def session(path) -> ort.InferenceSession:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    return sess


@pytest.mark.parametrize("n,h,w", [(1, 64, 96), (3, 64, 96), (1, 123, 77), (3, 123, 77), (1, 5, 3)])
def test_backbone_parity_with_mixed_prompts(tiny_bundle, n, h, w):
    model = make_tiny_model()
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    image = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(n * h))
    tasks = [manifest["tasks"][i % len(manifest["tasks"])] for i in range(n)]
    prompt = np.stack([np.load(tiny_bundle / "prompts" / f"{t}.npy") for t in tasks])
    got = session(tiny_bundle / "backbone.onnx").run(None, {"image": image.numpy(), "prompt": prompt})[0]
    with torch.no_grad():
        ref = BackboneGraph(model)(image, torch.from_numpy(prompt)).numpy()
    assert got.shape == (n, 3, h, w)
    assert np.abs(got - ref).max() <= 1e-4


def test_classifier_parity(tiny_bundle):
    model = make_tiny_model()
    image = torch.rand(3, 3, 128, 128)
    got = session(tiny_bundle / "classifier.onnx").run(None, {"image": image.numpy()})[0]
    with torch.no_grad():
        ref = ClassifierGraph(model)(image).numpy()
    assert got.shape == (3, 5)
    assert np.abs(got - ref).max() <= 1e-4


def test_manifest_describes_every_file(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["tasks"] == ["rain", "raindrop", "haze", "snow"]
    assert manifest["classes"][-1] == "clean"
    assert manifest["backbone"]["inputs"] == {"image": ["N", 3, "H", "W"], "prompt": ["N", manifest["prompt_dim"]]}
    assert manifest["pad_multiple"] == 16
    # what the engine needs to show photos to the classifier as the model was trained to see them
    view = (manifest["classifier_view"], manifest["classifier_input_size"], manifest["classifier_max_side"])
    assert view == ("longer_side", 768, 1024)
    files = {p.relative_to(tiny_bundle).as_posix() for p in tiny_bundle.rglob("*") if p.is_file()}
    assert files - {"manifest.json"} == set(manifest["files"])
    assert manifest["parity_max_abs_diff"]["backbone"] <= 1e-4
    names = [i.name for i in session(tiny_bundle / "backbone.onnx").get_inputs()]
    assert names == ["image", "prompt"]


@pytest.mark.slow
def test_fp16_variant_and_triton_repo(tmp_path):
    out = export_bundle(make_tiny_model(), tmp_path / "b", model_version="t", fp16=True, triton_dir=tmp_path / "tr")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backbone_fp16"]["file"] == "backbone_fp16.onnx"
    assert manifest["fp16_psnr_vs_fp32_db"] >= 40.0  # the bound the README states
    fp16 = session(out / "backbone_fp16.onnx")
    assert [i.type for i in fp16.get_inputs()] == ["tensor(float)", "tensor(float)"]
    config = (tmp_path / "tr" / "tap_backbone" / "config.pbtxt").read_text()
    assert "dynamic_batching" in config and f"dims: [ {manifest['prompt_dim']} ]" in config
    assert (tmp_path / "tr" / "tap_backbone" / "1" / "model.onnx").is_file()


def test_bundle_refuses_damage_and_names_the_file(bundle_copy):
    load_bundle(bundle_copy)
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())

    (bundle_copy / "classifier.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="classifier.onnx: sha256 mismatch"):
        load_bundle(bundle_copy)
    (bundle_copy / "classifier.onnx").unlink()
    with pytest.raises(BundleError, match="classifier.onnx: file listed in manifest.json is missing"):
        load_bundle(bundle_copy)
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        load_bundle(bundle_copy)
    shutil.rmtree(bundle_copy)
    with pytest.raises(BundleError, match="manifest not found"):
        load_bundle(bundle_copy)


def test_new_prompt_file_adds_a_weather_and_bad_ones_are_skipped(bundle_copy):
    bundle = load_bundle(bundle_copy)
    vec = np.random.default_rng(0).normal(size=bundle.prompt_dim).astype(np.float32)
    write_prompt(bundle_copy, "sandstorm", vec)
    prompts, errors = load_prompts(bundle)
    assert set(prompts) == {"rain", "raindrop", "haze", "snow", "sandstorm"} and not errors
    np.testing.assert_array_equal(prompts["sandstorm"], vec)
    np.save(bundle_copy / "prompts" / "snow.npy", vec)  # replaced without updating its hash
    np.save(bundle_copy / "prompts" / "fog.npy", vec)  # no hash entry at all
    prompts, errors = load_prompts(bundle)
    assert set(errors) == {"snow", "fog"} and "sha256 mismatch" in errors["snow"]
    assert set(prompts) == {"rain", "raindrop", "haze", "sandstorm"}
    with pytest.raises(BundleError, match="expects"):
        write_prompt(bundle_copy, "dust", vec[:3])
    with pytest.raises(BundleError, match="invalid task name"):
        write_prompt(bundle_copy, "../evil", vec)


@pytest.mark.slow
def test_export_command_keeps_weights_beside_the_bundle(tmp_path, capsys):
    run = tmp_path / "run"
    save_weights(make_tiny_model(seed=2), run / "model.safetensors", {"stage": "prompt-tune"})
    (tmp_path / "m.json").write_text(json.dumps({"rain100h": {"psnr_y": 1.0}}))
    out = tmp_path / "artifacts" / "v1"
    assert tap_train(["export", str(run), "--out", str(out), "--metrics", str(tmp_path / "m.json")]) == 0
    assert "parity" in capsys.readouterr().out
    manifest = load_bundle(out).manifest
    assert manifest["model_version"] == "v1" and manifest["metrics"] == {"rain100h": {"psnr_y": 1.0}}
    assert manifest["recipe"]["checkpoint"] == {"stage": "prompt-tune"}
    assert (out / "weights.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert "weights.safetensors" in manifest["files"]


def test_replace_classifier_keeps_the_backbones_and_refuses_another_restoration(bundle_copy, tmp_path):
    """A new bundle version with another classifier: backbone and prompt files byte for byte, the
    classifier and its calibration new; a model that restores differently is refused."""
    from dataclasses import replace

    from training.export import replace_classifier

    before = json.loads((bundle_copy / "manifest.json").read_text())
    model = make_tiny_model()  # the tiny bundle's own model
    torch.manual_seed(1)
    for p in model.encoder.parameters():
        p.data += 0.1 * torch.randn_like(p)
    model.cfg = replace(model.cfg, classifier_temperature=0.7, auto_min_weather_prob=0.4)
    replace_classifier(model, bundle_copy, model_version="tiny-test.1")
    after = json.loads((bundle_copy / "manifest.json").read_text())
    assert after["model_version"] == "tiny-test.1" and after["classifier_temperature"] == 0.7
    assert after["auto_rule"]["min_weather_prob"] == 0.4
    kept = {k: v for k, v in before["files"].items() if k != "classifier.onnx"}
    assert {k: after["files"][k] for k in kept} == kept
    assert after["files"]["classifier.onnx"] != before["files"]["classifier.onnx"]
    assert after["parity_max_abs_diff"]["classifier"] <= 1e-4
    load_bundle(bundle_copy)  # every hash verifies
    other = make_tiny_model(seed=3)  # another backbone: refused, the bundle left as it was
    with pytest.raises(ValueError, match="restores differently"):
        replace_classifier(other, bundle_copy, model_version="wrong")
    assert json.loads((bundle_copy / "manifest.json").read_text())["model_version"] == "tiny-test.1"
