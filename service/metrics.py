"""Prometheus metrics of the service (namespace `tap`), module-level in the default registry.

Deployment model: ONE worker process per GPU (uvicorn with a single worker; scale out with
more containers/GPUs behind a load balancer). Each process owns its registry, so no
prometheus multiprocess mode is used; scrape every process.

Label values are bounded: `degradation` is "auto", a task of the bundle or "invalid";
auto decisions are a class of the bundle or "mixture"; `reason` and `status_class` are
fixed lists below, all initialized up front so dashboards see zeros instead of gaps.
"""

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

NAMESPACE = "tap"
STATUS_CLASSES = ("2xx", "4xx", "5xx")
REJECTION_REASONS = ("too_large", "bad_image", "queue_full", "deadline", "unauthorized", "bad_request")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
TILE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MEGAPIXEL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 40.0)

REQUESTS = Counter(
    "requests",
    "Restore requests by requested degradation and HTTP status class.",
    ["degradation", "status_class"],
    namespace=NAMESPACE,
)
REQUEST_DURATION = Histogram(
    "request_duration_seconds",
    "Latency of successful restore requests, first byte in to response ready.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "queue_wait_seconds",
    "Time a tile waits in the batch queue before its batch starts.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "inference_duration_seconds",
    "Backbone run time per batch.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram("batch_size", "Tiles per backbone run.", namespace=NAMESPACE, buckets=BATCH_BUCKETS)
QUEUE_DEPTH = Gauge("queue_depth", "Tiles waiting for a batch (not yet running).", namespace=NAMESPACE)
TILES_PER_REQUEST = Histogram(
    "tiles_per_request",
    "Backbone work items per request (1 = sent whole; twice as many with the flip ensemble).",
    namespace=NAMESPACE,
    buckets=TILE_BUCKETS,
)
INPUT_MEGAPIXELS = Histogram(
    "input_megapixels",
    "Size of decoded input images in megapixels.",
    namespace=NAMESPACE,
    buckets=MEGAPIXEL_BUCKETS,
)
REJECTIONS = Counter("rejections", "Requests refused, by reason.", ["reason"], namespace=NAMESPACE)
AUTO_DECISIONS = Counter(
    "auto_decisions",
    "Auto-mode decisions by chosen class ('clean', a task, or 'mixture').",
    ["degradation"],
    namespace=NAMESPACE,
)
MEGAPIXELS_RESTORED = Counter("megapixels_restored", "Megapixels returned restored.", namespace=NAMESPACE)
MODEL_INFO = Info("model", "The served model: version, execution provider, precision.", namespace=NAMESPACE)

for _reason in REJECTION_REASONS:
    REJECTIONS.labels(reason=_reason)


def init_labels(tasks: list[str], classes: list[str]) -> None:
    """Create every label combination the bundle can produce, so series exist before traffic."""
    for degradation in ("auto", "invalid", *tasks):
        for status_class in STATUS_CLASSES:
            REQUESTS.labels(degradation=degradation, status_class=status_class)
    for decision in (*classes, "mixture"):
        AUTO_DECISIONS.labels(degradation=decision)


def set_model_info(model_version: str, execution_provider: str, precision: str) -> None:
    MODEL_INFO.info({"model_version": model_version, "execution_provider": execution_provider, "precision": precision})


def status_class(status: int) -> str:
    return f"{min(max(status // 100, 2), 5)}xx"


class GpuCollector:
    """tap_gpu_memory_used_bytes and tap_gpu_utilization_ratio from NVML, read at scrape time."""

    def __init__(self, device_index: int = 0) -> None:
        import pynvml  # nvidia-ml-py, optional

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        self._device = str(device_index)

    def collect(self):
        memory = GaugeMetricFamily(f"{NAMESPACE}_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"])
        util = GaugeMetricFamily(f"{NAMESPACE}_gpu_utilization_ratio", "GPU busy fraction, 0..1.", labels=["gpu"])
        try:
            memory.add_metric([self._device], float(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))
            util.add_metric([self._device], self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0)
        except Exception as exc:  # a scrape must not fail because NVML hiccuped
            log.warning("NVML read failed: %s", exc)
            return
        yield memory
        yield util


_gpu_collector: GpuCollector | None = None


def enable_gpu_metrics(device_index: int = 0) -> bool:
    """Register the GPU collector once, when nvidia-ml-py and a GPU are there; False otherwise."""
    global _gpu_collector
    if _gpu_collector is not None:
        return True
    try:
        _gpu_collector = GpuCollector(device_index)
    except Exception as exc:  # ImportError or no NVML/driver: GPU metrics are optional
        log.info("GPU metrics off: %s", exc)
        return False
    REGISTRY.register(_gpu_collector)
    return True
