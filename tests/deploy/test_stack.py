"""docker-compose.yml, up for real with podman-compose: api-cpu + prometheus, as the README's CPU line.

The API image is built by compose itself (FROM the python stand-in, tests/deploy/containers.py);
prom/prometheus is a stand-in from Debian's package where the real image is not stored. Only the
host ports are changed (free ones, so nothing else on 8000/9090 matters). Grafana is not run here.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from bench.reliability.images import png
from bench.reliability.server import loopback_client
from tests.deploy.conftest import REPO
from tests.deploy.containers import BUILD_ARGS, Podman, prometheus_image
from tests.deploy.waiting import free_port, wait_for

pytestmark = pytest.mark.integration
yaml = pytest.importorskip("yaml")
pytest.importorskip("podman_compose", reason="podman-compose not installed (pip install -e '.[dev]')")

COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = ("api-cpu", "prometheus")
JOB = "tap-restore"  # docker/prometheus/prometheus.yml
# Host ports only; everything else is the file as a user runs it.
OVERRIDE = """\
services:
  api-cpu:
    ports: !override ["127.0.0.1:{api_port}:8000"]
  prometheus:
    ports: !override ["127.0.0.1:{prometheus_port}:9090"]
"""


@dataclass
class Stack:
    podman: Podman
    project: str
    api: httpx.Client
    prometheus: httpx.Client

    def container(self, service: str) -> str:
        """The container of a compose service, found by the labels podman-compose sets."""
        result = self.podman(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )  # fmt: skip
        (name,) = result.stdout.split()
        return name

    def query(self, expr: str) -> list[dict]:
        body = self.prometheus.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]


def remove_project(podman: Podman, project: str) -> None:
    """Whatever `down` left behind: containers, volumes, networks of the project."""
    label = f"label=io.podman.compose.project={project}"
    names = podman("ps", "-aq", "--filter", label, check=False).stdout.split()
    if names:
        podman("rm", "-f", "-v", "-t", "5", *names, check=False)
    for kind in ("volume", "network"):
        listed = podman(kind, "ls", "-q", "--filter", label, check=False).stdout.split()
        if listed:
            podman(kind, "rm", "-f", *listed, check=False)


@pytest.fixture(scope="module")
def stack(podman: Podman, python_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`podman-compose --profile cpu up -d --build api-cpu prometheus`, taken down afterwards, even on failure."""
    workdir = tmp_path_factory.mktemp("stack")
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    prometheus_image(podman, services["prometheus"]["image"], python_image, workdir)
    ports = {"api_port": free_port(), "prometheus_port": free_port()}
    override = workdir / "ports.yml"
    override.write_text(OVERRIDE.format(**ports))
    project = f"tap-restore-test-{os.getpid()}"
    build_args = [*BUILD_ARGS, "--build-arg", f"PYTHON_IMAGE={python_image}"]
    compose = [sys.executable, "-m", "podman_compose", "-p", project, "-f", str(COMPOSE_FILE), "-f", str(override)]
    compose += ["--profile", "cpu", "--podman-build-args", " ".join(build_args)]
    # Only the file's defaults: a caller's TAP_MODELS_DIR or TAP_BUNDLE_PATH would change the stack.
    env = {k: v for k, v in podman.env.items() if not k.startswith(("TAP_", "GRAFANA_", "COMPOSE_"))}

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run([*compose, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
        with (workdir / "compose.log").open("a") as log:
            log.write(result.stdout + result.stderr)
        return result

    api = loopback_client(f"http://127.0.0.1:{ports['api_port']}", 60)
    prometheus = loopback_client(f"http://127.0.0.1:{ports['prometheus_port']}", 10)
    try:
        up = run("up", "-d", "--build", *SERVICES, timeout=900)
        assert up.returncode == 0, f"podman-compose up failed:\n{(up.stdout + up.stderr)[-6000:]}"
        yield Stack(podman, project, api, prometheus)
    finally:
        api.close()
        prometheus.close()
        run("down", "-v", "-t", "5", timeout=120)
        remove_project(podman, project)


def ready(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(900)
def test_prometheus_scrapes_the_api_inside_the_compose_network(stack: Stack) -> None:
    wait_for(lambda: ready(stack.api, "/readyz"), 120, "api-cpu never became ready")
    response = stack.api.post("/restore", files={"image": ("photo.png", png(96, 128), "image/png")})
    assert response.status_code == 200, response.text
    wait_for(lambda: ready(stack.prometheus, "/-/ready"), 60, "Prometheus never became ready")

    # The target is api:8000, the alias api-cpu answers to on the compose network.
    up = f'up{{job="{JOB}",instance="api:8000"}} == 1'
    wait_for(lambda: bool(stack.query(up)), 60, f"Prometheus never scraped the API: {stack.query('up')}")
    restored = f'sum(tap_requests_total{{job="{JOB}",status_class="2xx"}}) >= 1'
    wait_for(lambda: bool(stack.query(restored)), 30, "the restore request never reached Prometheus")
    assert stack.query(f'count({{__name__=~"tap_.+",job="{JOB}"}}) > 10')
    (info,) = stack.query(f'tap_model_info{{job="{JOB}"}}')
    manifest = json.loads((REPO / "artifacts/default/manifest.json").read_text())
    assert info["metric"]["model_version"] == manifest["model_version"]


def test_healthchecks_pass(stack: Stack) -> None:
    """podman has no systemd timers here to run them, so each is run once on demand, as the engine would."""
    for service in SERVICES:
        name = stack.container(service)
        passes = lambda name=name: stack.podman("healthcheck", "run", name, check=False).returncode == 0  # noqa: E731
        wait_for(passes, 120, f"{service}: healthcheck never passed")
        assert stack.podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy"


def test_api_container_is_hardened_as_the_file_says(stack: Stack) -> None:
    state = json.loads(stack.podman("inspect", stack.container("api-cpu")).stdout)[0]
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["Config"]["User"] == "10001:10001"
    assert "no-new-privileges" in " ".join(state["HostConfig"]["SecurityOpt"])
    assert {m["Destination"]: m["RW"] for m in state["Mounts"]}["/models"] is False
    assert state["ImageName"].endswith("/tap-restore:cpu"), "built by compose under the file's image name"
