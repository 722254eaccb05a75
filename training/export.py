"""Export a trained TAPNet to the artifact bundle (ONNX + prompt vectors + manifest).

The backbone graph takes the prompt vector as an input, so one session serves every
task, batches may mix tasks, and a new weather is a new .npy file, not a re-export.
"""

import copy
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from contract.bundle import FORMAT_VERSION, MANIFEST, load_bundle, sha256_file, write_json_atomic, write_prompt
from model.blocks import inference_form
from model.net import TAPNet
from training.quantize import Int8Job, quantize_bundle

log = logging.getLogger(__name__)

OPSET = 18
PARITY_SIZES = ((1, 64, 96), (3, 123, 77))  # deliberately unlike the export example


class BackboneGraph(nn.Module):
    """image (N,3,H,W) float32 0..1, prompt (N,D) -> restored (N,3,H,W) float32 0..1."""

    def __init__(self, model: TAPNet, half: bool = False, fused: bool = False) -> None:
        super().__init__()
        if fused:  # same outputs in ops that keep onnxruntime's CPU convs in their blocked layout
            model = inference_form(model)
        self.model = copy.deepcopy(model).half() if half else model
        self.dtype = torch.float16 if half else torch.float32

    def forward(self, image: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        out = self.model(image.to(self.dtype), prompt.to(self.dtype))
        return out.float().clamp(0, 1)


class ClassifierGraph(nn.Module):
    """image (N,3,h,w) -> logits (N, T+1); task keys are frozen into the graph at export."""

    def __init__(self, model: TAPNet) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.register_buffer("keys", model.keys(model.task_vectors()).detach().clone())
        self.temperature = model.keys.temperature

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image) @ self.keys.t() / self.temperature


def _export(graph: nn.Module, args: tuple, path: Path, names: tuple[list[str], list[str]], dynamic: dict) -> None:
    dim = torch.export.Dim.DYNAMIC
    shapes = {name: {axis: dim for axis in axes} for name, axes in dynamic.items()}
    torch.onnx.export(
        graph,
        args,
        str(path),
        input_names=names[0],
        output_names=names[1],
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes=shapes,
        external_data=False,
        verbose=False,
    )


def export_backbone(model: TAPNet, path: Path, half: bool = False, fused: bool = True) -> None:
    """The backbone graph; fp32 in the fused inference form unless `fused` is False (the form
    bundles up to tap-default-20261203 shipped). fp16 keeps the plain form: its conv-written
    variance could overflow in half precision."""
    example = (torch.rand(2, 3, 64, 64), model.task_vectors()[:1].detach().repeat(2, 1))
    graph = BackboneGraph(model, half=half, fused=fused and not half).eval()
    _export(graph, example, path, (["image", "prompt"], ["restored"]), {"image": (0, 2, 3), "prompt": (0,)})


def export_classifier(model: TAPNet, path: Path) -> None:
    side = model.cfg.classifier_size
    example = (torch.rand(2, 3, side, side),)
    _export(ClassifierGraph(model).eval(), example, path, (["image"], ["logits"]), {"image": (0, 2, 3)})


def classifier_manifest(model: TAPNet) -> dict:
    """The manifest entries that say how the service shows photos to the classifier and decides."""
    return {
        "classifier_input_size": model.cfg.classifier_size,
        "classifier_view": model.cfg.classifier_view,
        "classifier_max_side": model.cfg.classifier_max_side,
        "classifier_temperature": model.cfg.classifier_temperature,
        "auto_rule": model.cfg.auto_rule.to_dict(),
    }


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_parity(model: TAPNet, bundle_dir: Path, seed: int = 0) -> dict[str, float]:
    """Max abs difference torch vs onnxruntime on sizes other than the export example.

    Uses mixed prompts within a batch. Returns {'backbone': .., 'classifier': ..}.
    """
    gen = torch.Generator().manual_seed(seed)
    backbone = _session(bundle_dir / "backbone.onnx")
    classifier = _session(bundle_dir / "classifier.onnx")
    vectors = model.task_vectors().detach()
    worst = {"backbone": 0.0, "classifier": 0.0}
    graph, cls_graph = BackboneGraph(model).eval(), ClassifierGraph(model).eval()
    with torch.no_grad():
        for n, h, w in PARITY_SIZES:
            image = torch.rand(n, 3, h, w, generator=gen)
            prompt = vectors[torch.arange(n) % len(vectors)]
            ref = graph(image, prompt).numpy()
            got = backbone.run(None, {"image": image.numpy(), "prompt": prompt.numpy()})[0]
            worst["backbone"] = max(worst["backbone"], float(np.abs(ref - got).max()))
            ref = cls_graph(image).numpy()
            got = classifier.run(None, {"image": image.numpy()})[0]
            worst["classifier"] = max(worst["classifier"], float(np.abs(ref - got).max()))
    return worst


def fp16_psnr(bundle_dir: Path, seed: int = 0) -> float:
    """PSNR (dB) of the fp16 backbone against the fp32 one on CPU, on a random photo-sized input."""
    rng = np.random.default_rng(seed)
    image = rng.random((1, 3, 96, 128), dtype=np.float32)
    prompt = np.load(next((bundle_dir / "prompts").glob("*.npy")))[None]
    feeds = {"image": image, "prompt": prompt}
    ref = _session(bundle_dir / "backbone.onnx").run(None, feeds)[0]
    half = _session(bundle_dir / "backbone_fp16.onnx").run(None, feeds)[0]
    mse = float(np.mean((ref - half) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def write_triton_repo(bundle_dir: Path, triton_dir: Path, prompt_dim: int, max_batch: int = 16) -> Path:
    """A Triton model repository for the backbone with dynamic batching."""
    model_dir = triton_dir / "tap_backbone"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle_dir / "backbone.onnx", model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(
        f"""name: "tap_backbone"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch}
input [
  {{ name: "image" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }},
  {{ name: "prompt" data_type: TYPE_FP32 dims: [ {prompt_dim} ] }}
]
output [
  {{ name: "restored" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 5000
}}
instance_group [ {{ kind: KIND_GPU count: 1 }} ]
"""
    )
    return model_dir


def export_bundle(
    model: TAPNet,
    out_dir: Path,
    *,
    model_version: str,
    recipe: dict | None = None,
    metrics: dict | None = None,
    fp16: bool = False,
    triton_dir: Path | None = None,
    weights: Path | None = None,
    int8: Int8Job | None = None,
) -> Path:
    """Write a complete, verified bundle to `out_dir` (replaced atomically if it exists).

    `weights`: a model.safetensors to keep beside the graphs, so a longer run can start from it.
    `int8`: also add the INT8 CPU backbones (training.quantize; `tap-train quantize` does it later).
    """
    model = model.eval().cpu()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    staging.chmod(0o755)
    n, d = "N", model.prompt_dim
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": model_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tasks": model.tasks,
        "classes": model.classes,
        "prompt_dim": d,
        "pad_multiple": model.cfg.pad_multiple,
        "padding": "inside the graph (mirror padding to pad_multiple, cropped back)",
        **classifier_manifest(model),
        "backbone": {
            "file": "backbone.onnx",
            "inputs": {"image": [n, 3, "H", "W"], "prompt": [n, d]},
            "outputs": {"restored": [n, 3, "H", "W"]},
        },
        "classifier": {
            "file": "classifier.onnx",
            "inputs": {"image": [n, 3, "h", "w"]},
            "outputs": {"logits": [n, len(model.classes)]},
        },
        "prompts": {},
        "files": {},
        "net": model.cfg.to_dict(),
        "recipe": recipe or {},
        "metrics": metrics or {},
    }
    export_backbone(model, staging / "backbone.onnx")
    export_classifier(model, staging / "classifier.onnx")
    if fp16:
        export_backbone(model, staging / "backbone_fp16.onnx", half=True)
        manifest["backbone_fp16"] = {**manifest["backbone"], "file": "backbone_fp16.onnx", "precision": "fp16"}
    if weights is not None:
        shutil.copyfile(weights, staging / "weights.safetensors")
        manifest["weights"] = "weights.safetensors"
    for rel in ("backbone.onnx", "classifier.onnx", "backbone_fp16.onnx", "weights.safetensors"):
        if (staging / rel).exists():
            manifest["files"][rel] = sha256_file(staging / rel)
    write_json_atomic(staging / MANIFEST, manifest)
    for task, vec in zip(model.tasks, model.task_vectors().detach().numpy(), strict=True):
        write_prompt(staging, task, vec)
    parity = check_parity(model, staging)
    manifest = load_bundle(staging).manifest | {"parity_max_abs_diff": parity}
    if fp16:
        manifest["fp16_psnr_vs_fp32_db"] = round(fp16_psnr(staging), 2)
    write_json_atomic(staging / MANIFEST, manifest)
    if int8 is not None:
        quantize_bundle(staging, int8)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    if triton_dir is not None:
        write_triton_repo(out_dir, Path(triton_dir), d)
    log.info("exported %s (parity %s)", out_dir, parity)
    return out_dir


def replace_classifier(
    model: TAPNet,
    bundle_dir: Path,
    *,
    model_version: str,
    weights: Path | None = None,
    metrics: dict | None = None,
    recipe: dict | None = None,
) -> Path:
    """A new version of a bundle that differs only in its auto-mode classifier.

    classifier.onnx, the classifier's view, calibration temperature, auto rule and `net` are
    rewritten; backbone files (fp16, INT8 included) and prompts are kept byte for byte. The parity
    check runs against `model` for both graphs, so a model whose restoration is not the bundle's
    is refused. `metrics` (e.g. auto mode's new numbers) are merged into the manifest's.
    """
    model = model.eval().cpu()
    bundle = load_bundle(Path(bundle_dir))
    if model.tasks != bundle.manifest["tasks"] or model.prompt_dim != bundle.prompt_dim:
        tasks = bundle.manifest["tasks"]
        raise ValueError(f"{bundle.root}: the model's tasks {model.tasks} are not the bundle's {tasks}")
    staging = Path(tempfile.mkdtemp(prefix=".classifier-", dir=bundle.root.parent))
    staging.rmdir()
    shutil.copytree(bundle.root, staging)
    export_classifier(model, staging / "classifier.onnx")
    manifest = dict(bundle.manifest)
    manifest |= {
        "model_version": model_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **classifier_manifest(model),
        "net": model.cfg.to_dict(),
        "metrics": {**manifest.get("metrics", {}), **(metrics or {})},
        "recipe": recipe if recipe is not None else manifest.get("recipe", {}),
        "files": {**manifest["files"], "classifier.onnx": sha256_file(staging / "classifier.onnx")},
    }
    if weights is not None:
        shutil.copyfile(weights, staging / "weights.safetensors")
        manifest["weights"] = "weights.safetensors"
        manifest["files"]["weights.safetensors"] = sha256_file(staging / "weights.safetensors")
    write_json_atomic(staging / MANIFEST, manifest)
    parity = check_parity(model, staging)
    if parity["backbone"] > 1e-4:
        shutil.rmtree(staging)
        raise ValueError(f"{bundle.root}: the model restores differently from the bundle's backbone ({parity})")
    write_json_atomic(staging / MANIFEST, load_bundle(staging).manifest | {"parity_max_abs_diff": parity})
    old = bundle.root.with_name(f".{bundle.root.name}.old")
    bundle.root.rename(old)
    staging.rename(bundle.root)
    shutil.rmtree(old)
    log.info("replaced the classifier of %s (parity %s)", bundle.root, parity)
    return bundle.root
