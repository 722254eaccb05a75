"""docker-compose.yml up for real with podman-compose, for the stack tests (test_stack.py, test_scale.py).

The API image is built by compose itself (FROM the python stand-in, tests/deploy/containers.py);
pulled images (prom/prometheus, haproxy) are stand-ins from Debian's packages where the real ones
are not stored. Only the host ports are changed by an override (free loopback ports).
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bench.reliability.server import loopback_client
from tests.deploy.conftest import REPO
from tests.deploy.containers import BUILD_ARGS, Podman, standin_image
from tests.deploy.waiting import free_port

COMPOSE_FILE = REPO / "docker-compose.yml"
JOB = "tap-restore"  # docker/prometheus/prometheus.yml
PULLED = ("prometheus", "lb")  # services whose image is pulled, not built


@dataclass
class Stack:
    podman: Podman
    project: str
    ports: dict[str, int]  # service -> published loopback port
    log: Path

    def client(self, service: str, timeout_s: float = 60) -> httpx.Client:
        return loopback_client(f"http://127.0.0.1:{self.ports[service]}", timeout_s)

    def containers(self, service: str) -> list[str]:
        """The containers of a compose service, found by the labels podman-compose sets."""
        result = self.podman(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )  # fmt: skip
        return sorted(result.stdout.split())

    def container(self, service: str) -> str:
        (name,) = self.containers(service)
        return name

    def address(self, container: str) -> str:
        """The container's IP address on the compose network."""
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return self.podman("inspect", "--format", template, container).stdout.strip()


def query(prometheus: httpx.Client, expr: str) -> list[dict]:
    body = prometheus.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def scrape_errors(prometheus: httpx.Client) -> list[str]:
    """Each active target's address, health and last error: what a failed wait should show."""
    targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    return [f"{t['scrapeUrl']} {t['health']} {t['lastError']}" for t in targets]


def ready(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


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


@contextlib.contextmanager
def compose_up(
    podman: Podman, python_image: str, workdir: Path, profile: str, published: dict[str, int], services: list[str]
) -> Iterator[Stack]:
    """`podman-compose --profile P up -d --build SERVICES`, with each service in `published` on a free
    loopback port (its container port is the value); taken down afterwards, even on failure."""
    declared = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for service in set(PULLED) & set(services):
        standin_image(podman, declared[service]["image"], python_image, workdir)
    ports = {service: free_port() for service in published}
    override = {"services": {s: {"ports": [f"127.0.0.1:{ports[s]}:{target}"]} for s, target in published.items()}}
    # `!override` replaces the file's list instead of appending to it.
    text = yaml.safe_dump(override).replace("ports:\n    -", "ports: !override\n    -")
    (workdir / "ports.yml").write_text(text)
    project = f"tap-restore-{profile}-{os.getpid()}"
    build_args = [*BUILD_ARGS, "--build-arg", f"PYTHON_IMAGE={python_image}"]
    compose = [sys.executable, "-m", "podman_compose", "-p", project, "-f", str(COMPOSE_FILE)]
    compose += ["-f", str(workdir / "ports.yml"), "--profile", profile, "--podman-build-args", " ".join(build_args)]
    # Only the file's defaults: a caller's TAP_MODELS_DIR or TAP_BUNDLE_PATH would change the stack.
    env = {k: v for k, v in podman.env.items() if not k.startswith(("TAP_", "GRAFANA_", "COMPOSE_"))}
    log = workdir / "compose.log"

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run([*compose, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
        with log.open("a") as out:
            out.write(result.stdout + result.stderr)
        return result

    try:
        up = run("up", "-d", "--build", *services, timeout=900)
        assert up.returncode == 0, f"podman-compose up failed:\n{(up.stdout + up.stderr)[-6000:]}"
        yield Stack(podman, project, ports, log)
    finally:
        run("down", "-v", "-t", "5", timeout=120)
        remove_project(podman, project)
