"""A real Prometheus scrapes a real service under every kind of traffic; then every expr of every
dashboard panel, evaluated by Prometheus, must return data. Proves the dashboard matches the exports.

Only panels tagged GPU only (description) may stay empty: NVML metrics do not exist on CPU.
"""

import logging
import math
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bench.reliability.images import encode, png, scene
from bench.reliability.scenario import BASE
from bench.reliability.server import loopback_client
from service.settings import Settings
from tests.deploy.waiting import free_port, wait_for
from tests.live_server import LiveServer

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

JOB = "tap-restore"  # the job name of docker/prometheus/prometheus.yml; panels filter process_* on it
SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    scrape_timeout: 900ms
    static_configs:
      - targets: ["{target}"]
"""
# Small limits so one short run hits every rejection it can: a 16-tile image exceeds the 12-tile
# queue (admitted alone, refused while another is in flight), 300 kB uploads, 1 MP images.
LIMITS = {"queue_size": 12, "max_upload_bytes": 300_000, "max_pixels": 1_000_000}
BIG = (200, 200)  # 4 x 4 = 16 tiles of 64 px with 16 px overlap


@pytest.fixture(scope="module")
def live(tiny_bundle: Path) -> Iterator[LiveServer]:
    server = LiveServer(Settings(**{**BASE, "bundle_path": tiny_bundle, **LIMITS})).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Prometheus on a free loopback port scraping `live` every second; an HTTP client to its API."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Prometheus not installed (Debian: apt-get install -y --no-install-recommends prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(job=JOB, target=live.url.removeprefix("http://")))
    port = free_port()
    log = (root / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = loopback_client(f"http://127.0.0.1:{port}", 10)

    def ready() -> bool:
        assert proc.poll() is None, f"Prometheus exited: {(root / 'prometheus.log').read_text()}"
        try:
            return client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 30, "Prometheus did not become ready")
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(prom: httpx.Client, expr: str) -> list[dict]:
    """An instant query at now; the result vector."""
    body = prom.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body}"
    assert body["data"]["resultType"] == "vector", expr
    return body["data"]["result"]


def finite_values(result: list[dict]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if math.isfinite(v)]


def scalar(prom: httpx.Client, expr: str) -> float:
    (value,) = finite_values(query(prom, expr)) or [math.nan]
    return value


def exported_total(live: LiveServer, name: str) -> float:
    """Sum of all series of one metric, read from the service's /metrics."""
    lines = live.client.get("/metrics").text.splitlines()
    return sum(float(line.rpartition(" ")[2]) for line in lines if line.startswith(name + "{"))


def restore(live: LiveServer, data: bytes, degradation: str = "auto") -> int:
    """POST /restore on a fresh connection (safe from many threads); the status code."""
    files = {"image": ("photo.png", data, "image/png")}
    return httpx.post(f"{live.url}/restore", files=files, data={"degradation": degradation}, timeout=60).status_code


def send_every_kind(live: LiveServer) -> Counter:
    """Each task, auto, every refusal the settings allow, and concurrent requests that share batches."""
    statuses: Counter = Counter()
    tasks = [t["name"] for t in live.client.get("/v1/degradations").json()["tasks"]]
    assert tasks
    small = png(48, 64)  # one tile
    for task in tasks:
        statuses[restore(live, small, task)] += 1
    for seed in range(3):
        statuses[restore(live, png(48, 64, seed), "auto")] += 1
    statuses[restore(live, png(80, 96, 1), tasks[0])] += 1  # tiled: 2 x 2 tiles in one request
    statuses[restore(live, small, "fog")] += 1  # unknown degradation
    statuses[restore(live, b"this is not an image")] += 1
    statuses[restore(live, bytes(400_000))] += 1  # over max_upload_bytes
    statuses[restore(live, encode(Image.new("RGB", (1200, 1000))))] += 1  # 1.2 MP > max_pixels, a tiny file
    with ThreadPoolExecutor(8) as pool:  # 8 one-tile requests at once: they share batches
        statuses.update(pool.map(lambda seed: restore(live, png(48, 64, seed), tasks[seed % len(tasks)]), range(8)))
        big = encode(scene(*BIG))
        for _ in range(5):  # a 16-tile request in flight makes the others 503 at once
            burst = Counter(pool.map(lambda _: restore(live, big, tasks[0]), range(4)))
            statuses.update(burst)
            if burst[503]:
                break
    return statuses


@pytest.mark.timeout(90)
def test_every_dashboard_query_returns_data(
    live: LiveServer, prometheus: httpx.Client, dashboard: dict, gpu_only_ids: set[int]
) -> None:
    wait_for(lambda: finite_values(query(prometheus, f'up{{job="{JOB}"}} == 1')), 20, "target never scraped")
    first_scrape = time.monotonic()  # a sample from before the traffic: rates start from here

    statuses = send_every_kind(live)
    assert statuses[200] >= 12 and statuses[413] == 2 and statuses[422] == 1, statuses
    assert statuses[400] + statuses[415] == 1, statuses  # the bad image
    assert statuses[503] >= 1, f"no queue_full in 5 bursts: {statuses}"

    served = exported_total(live, "tap_requests_total")
    wait_for(
        lambda: scalar(prometheus, f'sum(tap_requests_total{{job="{JOB}"}})') == served,
        15,
        "Prometheus never scraped the final request count",
    )
    window = f"{math.ceil(time.monotonic() - first_scrape) + 5}s"  # covers all traffic and the baseline scrape

    empty, answered = [], 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", window).replace("$__range", window)
            if finite_values(query(prometheus, expr)):
                answered += 1
            else:
                empty.append((panel["id"], panel["title"], target["refId"], expr))
    log.info("%d queries of %d panels returned data; empty: %s", answered, len(dashboard["panels"]), empty)
    panels_without_data = {panel_id for panel_id, *_ in empty}
    assert panels_without_data <= gpu_only_ids, f"queries without data: {empty}"
    assert answered >= sum(len(p["targets"]) for p in dashboard["panels"] if p["id"] not in gpu_only_ids)

    # The traffic did what the panels are meant to show, not only zeros.
    for reason in ("too_large", "bad_image", "queue_full", "bad_request"):
        assert scalar(prometheus, f'sum(tap_rejections_total{{reason="{reason}"}})') >= 1, reason
    multi_tile_batches = 'sum(tap_batch_size_count) - sum(tap_batch_size_bucket{le="1.0"})'
    assert scalar(prometheus, multi_tile_batches) >= 1, "no batch ever held more than one tile"
    (info,) = query(prometheus, f'tap_model_info{{job="{JOB}"}}')
    assert info["metric"]["model_version"] == "tiny-test"
    assert info["metric"]["execution_provider"] == "CPUExecutionProvider"
