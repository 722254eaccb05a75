"""onnxruntime sessions, execution providers, prompt vectors and auto mode (classify, then the bundle's rule).

One backbone session serves every task: the prompt vector is an input, so a batch may mix
tasks and a mixture of prompts is a valid prompt. Prompts are re-read when the bundle's
manifest changes, so a new weather type needs no restart (but only the classes the
classifier was exported with take part in auto mode).
"""

import logging
import os
import queue
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from contract.auto_rule import CLEAN, AutoRule, Decision
from contract.bundle import MANIFEST, TASK_NAME, Bundle, BundleError, load_bundle, load_prompts
from contract.classifier_view import ClassifierView
from service import cpu_features, metrics
from service.settings import Settings

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
AUTO = "auto"
CUDA_OPTIONS = {
    "cudnn_conv_algo_search": "HEURISTIC",  # EXHAUSTIVE re-benchmarks every new shape
    "arena_extend_strategy": "kSameAsRequested",  # shapes vary: don't grow the arena by powers of 2
}


class UnknownDegradation(LookupError):
    """A degradation name that is malformed or has no prompt in the bundle."""


def _cuda_possible() -> bool:
    """onnxruntime-gpu lists CUDA even on machines without a GPU; also look for a driver."""
    if CUDA not in ort.get_available_providers():
        return False
    return sys.platform != "linux" or Path("/dev/nvidiactl").exists()


def providers_for(settings: Settings) -> list:
    if settings.precision == "int8":  # CPU only: the CUDA provider has no fast int8 convs
        return [CPU]
    wants_cuda = settings.device == "cuda" or (settings.device == "auto" and _cuda_possible())
    if not wants_cuda:
        return [CPU]
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, when installed
        except Exception as exc:
            log.warning("onnxruntime.preload_dlls failed: %s", exc)
    return [(CUDA, CUDA_OPTIONS), CPU]


def backbone_key(settings: Settings, flags: frozenset[str]) -> str:
    """The manifest key of the backbone to run: by precision, and for int8 by the CPU's flags."""
    if settings.precision == "int8":
        return cpu_features.int8_backbone_key(flags)
    return "backbone_fp16" if settings.precision == "fp16" else "backbone"


def worker_count(settings: Settings, providers: list) -> int:
    """Backbone sessions to run in parallel: settings.workers, or one per available CPU on the CPU
    provider (two sessions of one thread each beat one session of two: bench/results/cpu_fast_path.md)."""
    if settings.workers:
        return settings.workers
    if providers != [CPU]:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Engine:
    """Sessions created once; thread-safe to run: `workers` backbone sessions, each used by one
    batch at a time, and one classifier session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundle: Bundle = load_bundle(Path(settings.bundle_path))
        manifest = self.bundle.manifest
        self.model_version = self.bundle.model_version
        self.classes = self.bundle.classes
        self.pad_multiple = int(manifest.get("pad_multiple", 1))
        self.classifier_view = ClassifierView.from_manifest(manifest)
        # The rule the classifier was calibrated for; a setting left unset keeps the bundle's value.
        self.auto_rule = AutoRule.from_dict(manifest.get("auto_rule")).overridden(
            clean_threshold=settings.clean_threshold,
            min_weather_prob=settings.min_weather_prob,
            mixture_min_prob=settings.mixture_min_prob,
            mixture_margin=settings.mixture_margin,
        )
        if settings.tile_size - settings.tile_overlap < self.pad_multiple:
            raise ValueError(f"tile_size - tile_overlap must be >= the bundle's pad_multiple {self.pad_multiple}")
        self.cpu_flags = cpu_features.cpu_flags()
        self.backbone_key = backbone_key(settings, self.cpu_flags)
        if self.backbone_key not in manifest:
            hint = " (add it: tap-train quantize BUNDLE)" if settings.precision == "int8" else ""
            raise BundleError(
                f"{self.bundle.root / MANIFEST}: precision={settings.precision} but the bundle has no "
                f"{self.backbone_key}{hint}"
            )
        self.backbone_file = manifest[self.backbone_key]["file"]
        providers = providers_for(settings)
        self.workers = worker_count(settings, providers)
        threads = settings.intra_op_threads or (1 if self.workers > 1 else 0)
        path = str(self.bundle.path(self.backbone_key))
        options = self._options(threads)
        self.backbones = [ort.InferenceSession(path, options, providers=providers) for _ in range(self.workers)]
        self.backbone = self.backbones[0]
        self._idle: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for session in self.backbones:
            self._idle.put(session)
        options = self._options(settings.intra_op_threads)
        self.classifier = ort.InferenceSession(str(self.bundle.path("classifier")), options, providers=providers)
        self.providers = self.backbone.get_providers()  # what actually runs (fallback is silent)
        self.execution_provider = self.providers[0]
        if settings.device == "cuda" and self.execution_provider != CUDA:
            log.error("device=cuda was requested but onnxruntime runs %s", self.providers)
        if settings.precision == "fp16" and self.execution_provider == CPU:
            log.warning("fp16 backbone on CPU is slower than fp32")
        log.info(
            "backbone %s, %d worker(s) of %s intra-op thread(s); CPU %s",
            self.backbone_file,
            self.workers,
            threads or "default",
            cpu_features.describe(self.cpu_flags),
        )
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.prompts: dict[str, np.ndarray] = {}
        self.prompt_errors: dict[str, str] = {}
        self.refresh_prompts()
        self.warmed = False
        metrics.init_labels(self.tasks, self.classes)
        metrics.set_model_info(self.model_version, self.execution_provider, settings.precision)
        if self.execution_provider == CUDA:
            metrics.enable_gpu_metrics()

    def _options(self, intra_op_threads: int) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    # ---- prompts -------------------------------------------------------------------------

    @property
    def tasks(self) -> list[str]:
        return sorted(self.prompts)

    @property
    def auto_tasks(self) -> list[str]:
        """Weathers the classifier knows and that have a prompt."""
        return [c for c in self.classes if c != CLEAN and c in self.prompts]

    def _manifest_stamp(self) -> tuple[int, int]:
        stat = os.stat(self.bundle.root / MANIFEST)
        return stat.st_mtime_ns, stat.st_ino

    def refresh_prompts(self) -> bool:
        """Reload prompts when the manifest changed (write_prompt rewrites it). True if reloaded."""
        with self._lock:
            try:
                stamp = self._manifest_stamp()
            except OSError as exc:
                log.error("cannot stat the bundle manifest: %s", exc)
                return False
            if stamp == self._stamp:
                return False
            try:
                prompts, errors = load_prompts(self.bundle)
            except BundleError as exc:  # manifest unreadable now: keep serving the old prompts
                log.error("prompt reload failed, keeping %d prompts: %s", len(self.prompts), exc)
                return False
            added = sorted(set(prompts) - set(self.prompts))
            self.prompts, self.prompt_errors, self._stamp = prompts, errors, stamp
        if added:
            log.info("prompts loaded: %s", ", ".join(added))
            metrics.init_labels(self.tasks, self.classes)
        return True

    def resolve(self, name: str) -> Decision:
        """An explicit degradation name -> a one-task Decision; re-scans the bundle on a miss."""
        if not TASK_NAME.fullmatch(name):
            raise UnknownDegradation(f"invalid degradation name {name!r}; valid: {', '.join([AUTO, *self.tasks])}")
        if name not in self.prompts:
            self.refresh_prompts()
        if name not in self.prompts:
            raise UnknownDegradation(f"unknown degradation {name!r}; valid: {', '.join([AUTO, *self.tasks])}")
        return Decision(name, {name: 1.0})

    def prompt_vector(self, weights: dict[str, float]) -> np.ndarray:
        """(D,) float32: sum_t w_t c[t] (a single task is weight 1)."""
        prompts = self.prompts
        vec = sum(np.float32(w) * prompts[t] for t, w in weights.items())
        return np.asarray(vec, dtype=np.float32)

    # ---- inference -----------------------------------------------------------------------

    def run_backbone(self, images: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 0..1, (N, D) float32 -> (N, 3, H, W) float32 0..1.

        A non-finite output is an error (the batcher then retries row by row, so only the
        request that caused it fails) rather than a black image served with 200.
        """
        session = self._idle.get()  # one batch per session at a time: the batcher runs `workers` at once
        try:
            restored = session.run(None, {"image": images, "prompt": prompts})[0]
        finally:
            self._idle.put(session)
        if not np.isfinite(restored).all():
            raise FloatingPointError("backbone produced NaN or infinite values")
        return restored

    def classify(self, rgb: np.ndarray) -> dict[str, float]:
        """Class probabilities of a (H, W, 3) float image, shown as the bundle's classifier view says."""
        height, width = self.classifier_view.shape(*rgb.shape[:2])
        small = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        if small.size != (width, height):
            small = small.resize((width, height), Image.Resampling.BILINEAR)
        x = (np.asarray(small, dtype=np.float32) / 255.0).transpose(2, 0, 1)  # (3, h, w)
        boxes = self.classifier_view.boxes(height, width)
        views = np.stack([x[:, t : t + h, left : left + w] for t, left, h, w in boxes])
        logits = self.classifier.run(None, {"image": np.ascontiguousarray(views)})[0]
        probs = self.classifier_view.pool(logits)
        return {c: float(p) for c, p in zip(self.classes, probs, strict=True)}

    def decide(self, probabilities: dict[str, float]) -> Decision:
        return self.auto_rule.decide(probabilities, self.auto_tasks)

    def warmup(self) -> None:
        """Run the shapes production sees once, so the first request doesn't pay for it."""
        tile = self.settings.tile_size
        vec = next(iter(self.prompts.values()), np.zeros(self.bundle.prompt_dim, np.float32))
        for session in self.backbones:
            for n in sorted({1, self.settings.max_batch}):
                feeds = {"image": np.full((n, 3, tile, tile), 0.5, np.float32), "prompt": np.tile(vec, (n, 1))}
                session.run(None, feeds)
        side = max(self.classifier_view.size, self.classifier_view.max_side)  # the largest view of every mode
        self.classify(np.full((side, side, 3), 0.5, np.float32))
        self.warmed = True
        log.info(
            "warmed up %d worker(s) on %s (tile %d, batch <= %d)",
            self.workers,
            self.execution_provider,
            tile,
            self.settings.max_batch,
        )

    def readiness(self) -> list[str]:
        """Reasons the engine should not take traffic; empty when ready."""
        reasons = []
        if self.settings.device == "cuda" and self.execution_provider != CUDA:
            reasons.append(
                f"configured for device=cuda but onnxruntime runs {self.execution_provider} "
                f"(the CUDA provider failed to load: check CUDA/cuDNN libraries and the GPU driver)"
            )
        if not self.warmed:
            reasons.append("not warmed up yet")
        if not self.prompts:
            reasons.append("no prompt vectors loaded")
        return reasons
