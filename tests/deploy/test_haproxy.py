"""docker/haproxy/haproxy.cfg run by the real HAProxy on loopback, in front of three real services.

The file as shipped, except what only a compose network has: it binds 127.0.0.1 and lists the
three servers instead of filling its slots from DNS (server-template). Replica 3 asked for CUDA
and runs on CPU, so its /readyz says 503: it must get no traffic. test_scale.py runs the file
unchanged in containers; this runs in seconds and shows what HAProxy itself does.
"""

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.reliability.images import encode, png, scene
from bench.reliability.scenario import BASE
from bench.reliability.server import loopback_client
from service.settings import Settings
from tests.deploy.conftest import REPO
from tests.deploy.waiting import free_port, wait_for
from tests.live_server import LiveServer

pytestmark = pytest.mark.integration

CONFIG = REPO / "docker/haproxy/haproxy.cfg"
RETRY_AFTER = "7"  # the service's, so a 503 that carries it came from a replica
# A replica busy with a big photo (361 tiles of 64 px) refuses the rest: 4 tiles of queue.
BUSY = {"queue_size": 4, "max_batch": 1, "retry_after_s": int(RETRY_AFTER)}


def loopback_config(port: int, servers: list[str]) -> str:
    """The shipped config with a loopback bind and static servers in place of the DNS template."""
    text = CONFIG.read_text()
    template = re.search(r"^\s*server-template .*$", text, re.M)
    assert template, "the config fills its servers from DNS"
    static = "\n".join(f"    server api{i} {address}" for i, address in enumerate(servers, 1))
    text = text.replace(template.group(0), static)
    text = text.replace("bind :8000", f"bind 127.0.0.1:{port}")
    return re.sub(r" resolvers compose init-addr none resolve-prefer ipv4", "", text)


@pytest.fixture(scope="module")
def replicas(tiny_bundle: Path) -> Iterator[list[LiveServer]]:
    overrides = [BUSY, BUSY, {**BUSY, "device": "cuda"}]
    servers = [LiveServer(Settings(**{**BASE, "bundle_path": tiny_bundle, **o})).start() for o in overrides]
    if servers[2].client.get("/readyz").status_code == 200:
        pytest.skip("a CUDA device is present: no replica is left not ready")
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def haproxy(replicas: list[LiveServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """HAProxy in the foreground on a free port; (its URL, its log file)."""
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy not installed (Debian: apt-get install -y --no-install-recommends haproxy)")
    folder = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(loopback_config(port, [s.url.removeprefix("http://") for s in replicas]))
    log = folder / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with loopback_client(url, 10) as client:
            healthy = lambda: _status(client, "/lb-health") == 200  # noqa: E731
            wait_for(healthy, 30, f"HAProxy never routed to a ready replica: {log.read_text()[-2000:]}")
            # Servers start up; the one whose /readyz says 503 goes down after two checks.
            down = lambda: "replicas/api3 is DOWN" in log.read_text()  # noqa: E731
            wait_for(down, 30, f"the not-ready replica was never taken out: {log.read_text()[-2000:]}")
        yield url, log
    finally:
        process.terminate()
        process.wait(10)


def _status(client: httpx.Client, path: str) -> int | None:
    try:
        return client.get(path).status_code
    except httpx.TransportError:  # HAProxy not listening yet
        return None


def served_by(log: Path) -> list[str]:
    """Server names of the logged requests, in order (docker/haproxy/haproxy.cfg's log-format)."""
    return re.findall(r" replicas/(api\d)\(", log.read_text())


def test_traffic_goes_only_to_ready_replicas(haproxy: tuple[str, Path]) -> None:
    url, log = haproxy
    with loopback_client(url) as client:
        for _ in range(6):
            assert client.post("/restore", files={"image": ("p.png", png(), "image/png")}).status_code == 200
    assert set(served_by(log)) == {"api1", "api2"}, "least connections used both, and never the not-ready one"


def test_a_full_replicas_503_and_retry_after_pass_through(
    haproxy: tuple[str, Path], replicas: list[LiveServer]
) -> None:
    url, _ = haproxy
    big = encode(scene(900, 900, seed=2))  # 361 tiles: each replica busy for a while
    results: list[int] = []

    def occupy(replica: LiveServer) -> None:  # directly, so each of the two is surely busy
        results.append(replica.restore(big, degradation="rain").status_code)

    workers = [threading.Thread(target=occupy, args=(replica,)) for replica in replicas[:2]]
    for worker in workers:
        worker.start()
    busy = lambda: all(s.client.get("/readyz").json()["tiles_in_flight"] > 0 for s in replicas[:2])  # noqa: E731
    wait_for(busy, 30, f"the big restores never occupied both replicas: {results}", 0.005)
    with loopback_client(url) as client:
        response = client.post("/restore", files={"image": ("p.png", png(), "image/png")})
    for worker in workers:
        worker.join(120)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == RETRY_AFTER
    assert response.json()["error"]["code"] == "queue_full", "the replica's own answer, not HAProxy's"
    assert results == [200, 200]


def test_a_dead_replica_costs_no_request(haproxy: tuple[str, Path], replicas: list[LiveServer]) -> None:
    """A refused connection is retried on the other replica, before the health checks notice."""
    url, log = haproxy
    replicas[0].stop()
    with loopback_client(url) as client:
        statuses = [client.post("/restore", files={"image": ("p.png", png(), "image/png")}).status_code]
        statuses += [client.get("/v1/degradations").status_code for _ in range(4)]
    assert statuses == [200] * 5, log.read_text()[-3000:]
