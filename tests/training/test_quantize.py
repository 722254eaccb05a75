"""INT8 backbones: calibration, the files and manifest entries, quality against fp32, the command."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from contract.bundle import INT8_KEYS, BundleError, load_bundle, sha256_file, write_json_atomic
from training.cli import main as tap_train
from training.metrics import psnr
from training.quantize import FP32_MODULES, QUANTIZED_OPS, drawn_data, kept_fp32
from training.scenes import draw_city_scene

FP32_WEIGHTS = tuple(f"{module}." for module in FP32_MODULES)
SHIPPED = Path(__file__).resolve().parents[2] / "artifacts" / "default"


def run(path, image: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image, "prompt": prompt})[0]


def test_both_int8_files_are_listed_hashed_and_described(tiny_int8_bundle):
    manifest = load_bundle(tiny_int8_bundle).manifest  # verifies every hash
    assert [manifest[k]["reduce_range"] for k in INT8_KEYS] == [False, True]
    for key in INT8_KEYS:
        assert manifest["files"][manifest[key]["file"]] == sha256_file(tiny_int8_bundle / manifest[key]["file"])
        assert manifest[key]["inputs"] == manifest["backbone"]["inputs"]
    int8 = manifest["int8"]
    assert int8["source"]["sha256"] == manifest["files"]["backbone.onnx"]
    assert int8["calibration"]["folders"] == ["clean"] and int8["calibration"]["prompts"] == manifest["tasks"]
    assert int8["calibration"]["images"] == 4 * len(manifest["tasks"])
    quality = int8["quality"]["rain100h"]
    assert quality["n"] == 2 and {f"psnr_y_{k}" for k in ("backbone", *INT8_KEYS)} <= set(quality)


def test_the_fp32_modules_and_the_norm_variances_stay_fp32(tiny_int8_bundle):
    fp32 = onnx.load(str(tiny_int8_bundle / "backbone.onnx")).graph
    kept = kept_fp32(tiny_int8_bundle / "backbone.onnx")
    kept_convs = [n for n in fp32.node if n.op_type == "Conv" and n.name in kept]
    # stem: intro, down; head: up, the refine block's 10 convs (2 norm means), out; encoders 0 and 1:
    # one block of 10 each; downs.0
    assert len(kept_convs) == 35
    weights = {n.input[1] for n in kept_convs if not n.input[1].endswith("negative_average")}  # shared buffers
    assert len(weights) == 29 and all(w.startswith(FP32_WEIGHTS) for w in weights)
    graph = onnx.load(str(tiny_int8_bundle / "backbone_int8.onnx")).graph
    producers = {out: node for node in graph.node for out in node.output}
    by_name = {n.name: n for n in graph.node}
    kinds = {by_name[name].op_type for name in kept}
    assert kinds == {"Conv", "Add", "Mul"}  # convs, residual adds, the refine block's gates, `variance + eps`
    for name in kept:
        node = by_name[name]
        if node.op_type == "Conv":  # fp32 weights, or the -1/C a norm mean shares with quantized ones (exact)
            weight = producers.get(node.input[1])
            assert weight is None or weight.input[0].endswith("negative_average_quantized"), name
        else:
            assert not any(producers.get(i) and producers[i].op_type == "DequantizeLinear" for i in node.input), name
    quantized = [n for n in graph.node if n.op_type == "Conv" and n.name not in kept]
    assert quantized and all(producers[n.input[1]].op_type == "DequantizeLinear" for n in quantized)
    # The norms' mean convs (equal weights: exact in 8 bits) are quantized; their variances are fp32 MatMuls.
    assert [n for n in quantized if producers[n.input[1]].input[0].endswith("negative_average_quantized")]
    assert {n.op_type for n in graph.node if n.op_type.startswith("MatMul")} == {"MatMul"}
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    assert set(QUANTIZED_OPS) >= {"Conv"}


@pytest.mark.parametrize("key", INT8_KEYS)
def test_onnxruntime_runs_exactly_the_quantized_convs_in_8_bits(tiny_int8_bundle, tmp_path, key):
    """onnxruntime quantizes an fp32 conv's weights itself when the conv sits between a
    DequantizeLinear and a QuantizeLinear: the kept convs must not, so count what it loads."""
    kept = set(kept_fp32(tiny_int8_bundle / "backbone.onnx"))
    convs = [n for n in onnx.load(str(tiny_int8_bundle / f"{key}.onnx")).graph.node if n.op_type == "Conv"]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tiny_int8_bundle / f"{key}.onnx"), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(options.optimized_model_filepath).graph.node
    assert sum(n.op_type == "QLinearConv" for n in loaded) == sum(n.name not in kept for n in convs) == len(convs) - 35


@pytest.mark.parametrize("key", INT8_KEYS)
def test_int8_output_stays_close_to_fp32(tiny_int8_bundle, key):
    image = draw_city_scene(72, 88, seed=7).transpose(2, 0, 1)[None].astype(np.float32)
    prompt = np.load(tiny_int8_bundle / "prompts" / "rain.npy")[None]
    ref = run(tiny_int8_bundle / "backbone.onnx", image, prompt)
    got = run(tiny_int8_bundle / f"{key}.onnx", image, prompt)
    assert got.shape == ref.shape
    assert psnr(got, ref, data_range=1.0) >= 30.0  # tiny random weights; the shipped model: tests below


def test_a_stale_int8_file_is_refused(tiny_int8_bundle, tmp_path):
    bundle = shutil.copytree(tiny_int8_bundle, tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "backbone.onnx").write_bytes(b"")  # as if backbone.onnx had been re-exported alone
    manifest["files"]["backbone.onnx"] = sha256_file(bundle / "backbone.onnx")
    write_json_atomic(bundle / "manifest.json", manifest)
    with pytest.raises(BundleError, match="tap-train quantize"):
        load_bundle(bundle)


def test_quantize_command_adds_int8_to_an_existing_bundle(bundle_copy, tmp_path, capsys):
    data = drawn_data(tmp_path / "data", scenes=3, pairs=1)
    before = json.loads((bundle_copy / "manifest.json").read_text())
    args = ["quantize", str(bundle_copy), "--data", str(data), "--folders", "clean", "--crops", "2", "--crop", "32"]
    assert tap_train(args) == 0
    assert "rain100h" in capsys.readouterr().out
    after = load_bundle(bundle_copy).manifest
    assert after["files"]["backbone.onnx"] == before["files"]["backbone.onnx"]  # fp32 untouched
    assert after["int8"]["calibration"]["images"] == 2 * len(after["tasks"])
    assert set(INT8_KEYS) <= set(after)


def test_shipped_int8_stays_close_to_fp32_on_real_photos(shared_data):
    """The stated parity of the shipped bundle: real photos restored >= 30 dB PSNR-Y from fp32."""
    from training.image_files import fit_longer_side, list_images, read_rgb
    from training.metrics import quantize, rgb_to_y

    bundle = SHIPPED
    if not (bundle / "backbone_int8.onnx").is_file():
        pytest.skip(f"{bundle} has no int8 backbone")
    manifest = load_bundle(bundle).manifest
    for task in ("rain", "haze"):
        path = list_images(shared_data / "real" / task)[0]
        rgb = fit_longer_side(read_rgb(path), 256).astype(np.float32) / 255.0
        image, prompt = rgb.transpose(2, 0, 1)[None], np.load(bundle / "prompts" / f"{task}.npy")[None]
        ref = quantize(run(bundle / "backbone.onnx", image, prompt)[0].transpose(1, 2, 0))
        for key in INT8_KEYS:
            got = quantize(run(bundle / manifest[key]["file"], image, prompt)[0].transpose(1, 2, 0))
            assert psnr(rgb_to_y(got), rgb_to_y(ref)) >= 30.0, (path.name, key)
