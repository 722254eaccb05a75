"""Static INT8 backbones (QDQ) for CPUs, added to an existing bundle in place.

Two files, because integer dot products differ between CPUs: `backbone_int8.onnx` (8-bit
weights) for CPUs with VNNI or AMX, and `backbone_int8_rr.onnx` (7-bit weights, onnxruntime's
`reduce_range`) for CPUs without them, whose u8 x s8 multiply-add saturates 16-bit sums on
8-bit weights. The service picks one at start-up from the CPU flags (service.cpu_features).

Calibration runs crops of training photos and real weather photos (never the validation sets)
under every prompt of the bundle; quality is then measured on the validation sets against the
fp32 backbone of the same bundle, and everything goes into the manifest.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from PIL import Image

from contract.bundle import INT8_KEYS, MANIFEST, load_bundle, read_manifest, sha256_file, write_json_atomic
from training.datasets import split_clean
from training.image_files import fit_longer_side, list_images, list_pairs, read_pair, read_rgb
from training.metrics import psnr, quantize, rgb_to_y

log = logging.getLogger(__name__)

REDUCE_RANGE = {"backbone_int8": False, "backbone_int8_rr": True}  # manifest key -> 7-bit weights
# Training photos and real weather photos; ../shared/data/validation is only for measuring.
CALIBRATION_FOLDERS = (
    "clean",
    "train/rain-heavy/input",
    "train/raindrop/input",
    "weather-photos/rain",
    "weather-photos/fog",
    "weather-photos/clear",
    "weather-photos/snow-scene",
)
QUALITY_SETS = (("rain100h", "rain"), ("sots-indoor", "haze"))  # validation/<folder>, prompt
# Convs alone leave onnxruntime converting layouts around every fp32 elementwise op (1.09x over
# fp32 at 768^2); with the gates, residual adds and norm centring in int8 too, the chain stays in
# NHWC int8 (1.3-1.5x). Their ranges need percentile calibration: with MinMax, SOTS-indoor-dev
# lost 0.62 dB (0.10 with percentiles, as with convs alone).
QUANTIZED_OPS = ("Conv", "Mul", "Add", "Sub")
PERCENTILE = 99.99
# Exported module scopes kept fp32. At full resolution (stem, head) the maps have 16 channels, where
# 8-bit ops ran no faster than fp32. The first two encoder levels carry the photo's faint detail (a
# dense haze's scene), which the network then amplifies: in 8 bits, the worst real photo was 32.1 dB
# from fp32, with them in fp32 38.5 dB, at 0.90x INT8's speed (history item 42).
FP32_MODULES = (
    "model.backbone.stem",
    "model.backbone.encoders.0",
    "model.backbone.downs.0",
    "model.backbone.encoders.1",
    "model.backbone.head",
)
REAL_SIDE = 768  # real photos are compared int8 vs fp32 at this longer side (no ground truth)


@dataclass(frozen=True)
class Calibration:
    """Which crops calibrate the activation ranges; recorded in the manifest."""

    data_root: Path
    folders: tuple[str, ...] = CALIBRATION_FOLDERS
    crops_per_folder: int = 3  # percentile calibration keeps every activation in memory: ~5 GB here
    crop: int = 192
    seed: int = 0
    holdout_every: int = 11  # clean/: only the training split (training.config.DataConfig)

    def describe(self, tasks: list[str]) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k != "data_root"},
            "data_root": str(self.data_root),
            "prompts": tasks,
            "images": len(self.folders) * self.crops_per_folder * len(tasks),
            "method": f"static QDQ, activation ranges at the {PERCENTILE} percentile, per-channel weights, "
            "u8 activations / s8 weights",
        }


@dataclass(frozen=True)
class Int8Job:
    """What `quantize_bundle` calibrates on and measures quality on."""

    calibration: Calibration
    paired: tuple[tuple[Path, str], ...] = ()  # (validation folder with input/ and target/, task)
    real: Path | None = None  # real/<task>/ photos: int8 vs fp32 without ground truth


def default_job(data_root: Path, **calibration: object) -> Int8Job:
    """Calibration folders of `data_root`, its validation sets and real photos where present."""
    data_root = Path(data_root)
    paired = tuple((data_root / "validation" / name, task) for name, task in QUALITY_SETS)
    real = data_root / "real"
    return Int8Job(
        Calibration(data_root, **calibration),  # type: ignore[arg-type]
        tuple(p for p in paired if p[0].is_dir()),
        real if real.is_dir() else None,
    )


def calibration_crops(cal: Calibration) -> list[np.ndarray]:
    """`crops_per_folder` random crop x crop squares (float32 HWC 0..1) from evenly spaced photos of each folder."""
    rng = np.random.default_rng(cal.seed)
    crops = []
    for folder in cal.folders:
        files = list_images(cal.data_root / folder, "calibration")
        if folder == "clean":
            files = split_clean(files, cal.holdout_every, "train")
        for path in files[:: max(1, len(files) // cal.crops_per_folder)][: cal.crops_per_folder]:
            with Image.open(path) as img:  # shorter side 2 x crop: photo-scale detail, one crop size
                img = img.convert("RGB")
                scale = 2 * cal.crop / min(img.size)
                size = (max(2 * cal.crop, round(img.width * scale)), max(2 * cal.crop, round(img.height * scale)))
                image = np.asarray(img.resize(size, Image.Resampling.BICUBIC))
            h, w = image.shape[:2]
            top, left = int(rng.integers(0, h - cal.crop + 1)), int(rng.integers(0, w - cal.crop + 1))
            crops.append(image[top : top + cal.crop, left : left + cal.crop].astype(np.float32) / 255.0)
    return crops


class PromptedCrops(CalibrationDataReader):
    """Each crop once under every prompt: one batch of T images per crop."""

    def __init__(self, crops: list[np.ndarray], prompts: np.ndarray) -> None:
        self._feeds = iter(
            {"image": np.repeat(c.transpose(2, 0, 1)[None], len(prompts), 0), "prompt": prompts} for c in crops
        )

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def namespace(node: onnx.NodeProto) -> str:
    """The module scopes the exporter recorded for a node ("" for nodes added after export)."""
    return next((p.value for p in node.metadata_props if p.key == "namespace"), "")


def kept_fp32(model_path: Path) -> list[str]:
    """Nodes that stay fp32: the modules of FP32_MODULES (the full-resolution stem and head, with
    the first and the last conv, and the encoder's first two levels), the residual add after the
    last conv, and the channel norms' `variance + eps` (8 bits cannot span a variance's range; the
    variance itself is a MatMul, an op type left fp32).

    The residual add matters for the convs too: with it quantized, onnxruntime quantizes the fp32
    weights of a DequantizeLinear -> Conv -> QuantizeLinear chain itself at load (history item 42).
    """
    nodes = onnx.load(str(model_path)).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    scopes = {n.name: namespace(n) for n in nodes}
    if not any(scopes.values()):
        raise ValueError(f"{model_path} has no module namespaces: export it with training.export")
    in_fp32_modules = [
        n.name
        for n in nodes
        if n.op_type in QUANTIZED_OPS and any(f"{module}:" in scopes[n.name] for module in FP32_MODULES)
    ]
    residual = [n.name for n in nodes if n.op_type == "Add" and convs[-1].output[0] in n.input]
    sqrt_inputs = {n.input[0] for n in nodes if n.op_type == "Sqrt"}
    eps = [n.name for n in nodes if n.op_type == "Add" and n.output[0] in sqrt_inputs]
    return list(dict.fromkeys([convs[0].name, convs[-1].name, *in_fp32_modules, *residual, *eps]))


def quantize_backbone(fp32: Path, out: Path, crops: list[np.ndarray], prompts: np.ndarray, reduce_range: bool) -> None:
    """Static QDQ INT8 of the fp32 backbone's convs, calibrated on `crops` under every prompt."""
    quantize_static(
        str(fp32),
        str(out),
        PromptedCrops(crops, prompts),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_fp32(fp32),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": PERCENTILE},
    )


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _restore(session: ort.InferenceSession, rgb: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> restored uint8 (H, W, 3), whole image (the graph pads to its stride)."""
    image = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    return quantize(session.run(None, {"image": image, "prompt": prompt[None]})[0][0].transpose(1, 2, 0))


def measure_quality(bundle: Path, keys: list[str], paired: list[tuple[Path, str]], real: Path | None) -> dict:
    """Mean PSNR-Y (dB) of the fp32 backbone and each of `keys` on paired sets under their task's
    prompt, and PSNR-Y of each against fp32 on real photos (median and worst: no ground truth)."""
    loaded = load_bundle(bundle)
    sessions = {key: _session(loaded.path(key)) for key in ["backbone", *keys]}
    prompts = {t: np.load(bundle / "prompts" / f"{t}.npy") for t in loaded.manifest["tasks"]}
    quality: dict = {}
    for root, task in paired:
        scores: dict[str, list[float]] = {key: [] for key in sessions}
        for lq_path, gt_path in list_pairs(root):
            lq, gt = read_pair(lq_path, gt_path)
            for key, session in sessions.items():
                scores[key].append(psnr(rgb_to_y(_restore(session, lq, prompts[task])), rgb_to_y(gt)))
        quality[root.name] = {"task": task, "n": len(scores["backbone"])} | {
            f"psnr_y_{key}": round(float(np.mean(v)), 3) for key, v in scores.items()
        }
    if real is not None:
        vs_fp32: dict[str, list[float]] = {key: [] for key in keys}
        for folder in sorted(p for p in real.iterdir() if p.is_dir() and p.name in prompts):
            for path in list_images(folder):
                rgb = fit_longer_side(read_rgb(path), REAL_SIDE)
                ref = rgb_to_y(_restore(sessions["backbone"], rgb, prompts[folder.name]))
                for key in keys:
                    vs_fp32[key].append(psnr(rgb_to_y(_restore(sessions[key], rgb, prompts[folder.name])), ref))
        quality["real_vs_fp32"] = {"n": len(vs_fp32[keys[0]]), "longer_side": REAL_SIDE} | {
            key: {"median_psnr_y": round(float(np.median(v)), 2), "worst_psnr_y": round(float(np.min(v)), 2)}
            for key, v in vs_fp32.items()
        }
    return quality


def quantize_bundle(bundle: Path, job: Int8Job) -> dict:
    """Add both INT8 backbones to an existing bundle in place: files, hashes, calibration set and
    measured quality in the manifest. Returns the manifest's "int8" entry."""
    bundle = Path(bundle)
    loaded = load_bundle(bundle)  # refuses a damaged bundle before anything is written
    manifest = loaded.manifest
    tasks = list(manifest["tasks"])
    prompts = np.stack([np.load(bundle / "prompts" / f"{t}.npy") for t in tasks])
    crops = calibration_crops(job.calibration)
    fp32 = loaded.path("backbone")
    for key in INT8_KEYS:
        rel = f"{key}.onnx"
        what = f"{rel} (reduce_range={REDUCE_RANGE[key]}) on {len(crops)} crops x {len(tasks)} prompts"
        log.info("quantizing %s", what)
        quantize_backbone(fp32, bundle / rel, crops, prompts, REDUCE_RANGE[key])
        manifest[key] = {**manifest["backbone"], "file": rel, "precision": "int8", "reduce_range": REDUCE_RANGE[key]}
        manifest["files"][rel] = sha256_file(bundle / rel)
    manifest["int8"] = {
        "source": {"file": manifest["backbone"]["file"], "sha256": manifest["files"][manifest["backbone"]["file"]]},
        "choice": "backbone_int8 on CPUs with VNNI or AMX, backbone_int8_rr elsewhere (service.cpu_features)",
        "quantized_ops": list(QUANTIZED_OPS),
        "kept_fp32": f"the modules {', '.join(FP32_MODULES)} (the first and last conv with them), the residual "
        "add, the channel norms' variance (MatMul) and variance + eps, other op types",
        "calibration": job.calibration.describe(tasks),
    }
    write_json_atomic(bundle / MANIFEST, manifest)
    manifest["int8"]["quality"] = measure_quality(bundle, list(INT8_KEYS), list(job.paired), job.real)
    write_json_atomic(bundle / MANIFEST, manifest)
    return read_manifest(bundle)["int8"]


def drawn_data(root: Path, scenes: int = 6, pairs: int = 2) -> Path:
    """A stand-in data folder of drawn scenes (training.scenes), laid out as `quantize_bundle` reads
    ../shared/data: root/clean/ and root/validation/rain100h/{input,target}. For tests and --quick."""
    from PIL import Image

    from training.scenes import draw_city_scene, to_uint8

    (root / "clean").mkdir(parents=True)
    for i in range(scenes):
        Image.fromarray(to_uint8(draw_city_scene(48, 64, seed=i))).save(root / "clean" / f"s{i}.png")
    paired = root / "validation" / "rain100h"
    for sub in ("input", "target"):
        (paired / sub).mkdir(parents=True)
    for i in range(pairs):
        gt = to_uint8(draw_city_scene(40, 56, seed=50 + i))
        Image.fromarray(gt).save(paired / "target" / f"p{i}.png")
        Image.fromarray((gt * 0.7 + 30).astype(np.uint8)).save(paired / "input" / f"p{i}.png")
    return root
