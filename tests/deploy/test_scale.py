"""docker-compose.yml's scale profile, up for real with podman-compose: HAProxy in front of 2 API replicas.

A steady stream of restores goes through the load balancer; one replica is killed (SIGKILL, a
crash) in the middle of it. Only the restores in flight on that replica may fail; everything
else, including requests HAProxy had picked the dead replica for, is served by the other one.
Prometheus finds both replicas by DNS. tests/deploy/compose.py brings the stack up.
"""

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from bench.reliability.images import png
from bench.reliability.server import loopback_client
from tests.deploy.containers import Podman
from tests.deploy.waiting import wait_for

pytestmark = pytest.mark.integration
pytest.importorskip("yaml")
pytest.importorskip("podman_compose", reason="podman-compose not installed (pip install -e '.[dev]')")

from tests.deploy.compose import JOB, Stack, compose_up, query, ready, scrape_errors  # noqa: E402 (needs yaml)

log = logging.getLogger(__name__)

SERVICES = ["lb", "api-replica", "prometheus"]
REPLICAS = 2  # the file's default (TAP_REPLICAS)
CLIENTS = 4  # concurrent clients in the stream: about 2 in flight on each replica
BEFORE_KILL_S = 5.0
AFTER_KILL_S = 6.0
# docker/haproxy/haproxy.cfg's log-format: ... backend/server(server ip) timers status bytes termination "request"
LB_LOG = re.compile(r" replicas/(\S+)\((\S+)\) \S+ (-?\d+) \S+ (\S{4}) \"(\S+) (\S+)")


@dataclass(frozen=True)
class Sent:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer from the load balancer
    error: str = ""


@dataclass(frozen=True)
class LbLine:
    server: str
    address: str
    status: int
    termination: str
    method: str
    path: str


@pytest.fixture(scope="module")
def stack(podman: Podman, python_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`podman-compose --profile scale up -d --build lb api-replica prometheus`, taken down afterwards."""
    workdir = tmp_path_factory.mktemp("scale")
    with compose_up(podman, python_image, workdir, "scale", {"lb": 8000, "prometheus": 9090}, SERVICES) as up:
        yield up


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> list[str]:
    """The replica containers, once each is ready and HAProxy routes to it."""
    names = stack.containers("api-replica")
    assert len(names) == REPLICAS, names
    for name in names:
        passes = lambda name=name: stack.podman("healthcheck", "run", name, check=False).returncode == 0  # noqa: E731
        wait_for(passes, 180, f"{name}: /readyz never answered 200")
    lb = stack.client("lb")
    wait_for(lambda: ready(lb, "/readyz"), 60, "the load balancer never routed to a ready replica")
    return names


def lb_lines(stack: Stack) -> list[LbLine]:
    lines = []
    for match in LB_LOG.finditer(stack.podman.logs(stack.container("lb"))):
        server, address, status, termination, method, path = match.groups()
        lines.append(LbLine(server, address.rsplit(":", 1)[0], int(status), termination, method, path))
    return lines


def stream(client: httpx.Client, stop: threading.Event, sent: list[Sent]) -> None:
    """One client: restores back to back until `stop`."""
    photo = png(96, 128)
    while not stop.is_set():
        started = time.monotonic()
        try:
            status, error = client.post("/restore", files={"image": ("p.png", photo, "image/png")}).status_code, ""
        except httpx.TransportError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        sent.append(Sent(started, time.monotonic(), status, error))


@pytest.mark.timeout(1200)
def test_prometheus_discovers_every_replica(stack: Stack, replicas: list[str]) -> None:
    prometheus = stack.client("prometheus", 10)
    wait_for(lambda: ready(prometheus, "/-/ready"), 60, "Prometheus never became ready")
    expected = {f"{stack.address(name)}:8000" for name in replicas}
    up = f'up{{job="{JOB}"}} == 1'
    found = lambda: {r["metric"]["instance"] for r in query(prometheus, up)}  # noqa: E731
    wait_for(lambda: found() == expected, 60, f"found {found()}, expected {expected}: {scrape_errors(prometheus)}")
    # Only now are both replicas surely up and resolved (HAProxy finds them by DNS, as Prometheus
    # does): requests sent before that all went to the first one once, in a fresh-clone run.
    lb = stack.client("lb")
    for _ in range(2 * REPLICAS):
        assert lb.post("/restore", files={"image": ("p.png", png(), "image/png")}).status_code == 200
    # leastconn spreads sequential requests over idle replicas: each one served some.
    served = f'sum by (instance) (tap_requests_total{{job="{JOB}",status_class="2xx"}}) > 0'
    wait_for(lambda: {r["metric"]["instance"] for r in query(prometheus, served)} == expected, 30, "a replica idle")


@pytest.mark.timeout(600)
def test_killing_a_replica_fails_only_its_requests_in_flight(stack: Stack, replicas: list[str]) -> None:
    victim = replicas[0]
    victim_address, survivor_address = stack.address(victim), stack.address(replicas[1])
    stop, sent = threading.Event(), []
    clients = [loopback_client(f"http://127.0.0.1:{stack.ports['lb']}", 60) for _ in range(CLIENTS)]
    threads = [threading.Thread(target=stream, args=(client, stop, sent)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE_KILL_S)
        killed_from = time.monotonic()
        stack.podman("kill", "--signal", "KILL", victim)
        killed_by = time.monotonic()
        time.sleep(AFTER_KILL_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    lines = [line for line in lb_lines(stack) if line.path == "/restore"]

    failed = [s for s in sent if s.status != 200]
    in_flight = [s for s in sent if s.started < killed_by and s.ended > killed_from]
    on_victim = [line for line in lines if line.address == victim_address]
    summary = (
        f"{len(sent)} restores from {CLIENTS} clients, {len(in_flight)} in flight during the "
        f"{killed_by - killed_from:.2f} s `podman kill`; failed: {sorted((s.status, s.error) for s in failed)}; "
        f"HAProxy sent {len(on_victim)} to the killed replica, "
        f"{sum(line.status != 200 for line in on_victim)} of them not answered 200"
    )
    log.info("replica kill: %s", summary)
    assert all(s.status is not None for s in sent), summary  # the load balancer answered every request
    assert all(s in in_flight for s in failed), summary  # nothing failed that started after the kill
    lb_failed = [line for line in lines if line.status != 200]
    assert len(lb_failed) == len(failed), lb_failed
    assert {line.address for line in lb_failed} <= {victim_address}, lb_failed  # only the killed replica's
    before = {line.address for line in lines[: len(lines) // 3]}
    assert before == {victim_address, survivor_address}, "both replicas served before the kill"
    after = [s for s in sent if s.started > killed_by and s.status == 200]
    assert len(after) >= CLIENTS, summary  # the stream went on, on the survivor
    assert {line.address for line in lines[-len(after) :]} == {survivor_address}
