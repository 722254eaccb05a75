"""docker-compose.yml, up for real with podman-compose: api-cpu + prometheus, as the README's CPU line.

tests/deploy/compose.py brings it up (only the host ports changed). Grafana is not run here.
"""

import json
from collections.abc import Iterator

import pytest

from bench.reliability.images import png
from tests.deploy.conftest import REPO
from tests.deploy.containers import Podman
from tests.deploy.waiting import wait_for

pytestmark = pytest.mark.integration
pytest.importorskip("yaml")
pytest.importorskip("podman_compose", reason="podman-compose not installed (pip install -e '.[dev]')")

from tests.deploy.compose import JOB, Stack, compose_up, query, ready, scrape_errors  # noqa: E402 (needs yaml)

SERVICES = ["api-cpu", "prometheus"]


@pytest.fixture(scope="module")
def stack(podman: Podman, python_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`podman-compose --profile cpu up -d --build api-cpu prometheus`, taken down afterwards."""
    workdir = tmp_path_factory.mktemp("stack")
    with compose_up(podman, python_image, workdir, "cpu", {"api-cpu": 8000, "prometheus": 9090}, SERVICES) as up:
        yield up


@pytest.mark.timeout(900)
def test_prometheus_scrapes_the_api_inside_the_compose_network(stack: Stack) -> None:
    api, prometheus = stack.client("api-cpu"), stack.client("prometheus", 10)
    wait_for(lambda: ready(api, "/readyz"), 120, "api-cpu never became ready")
    response = api.post("/restore", files={"image": ("photo.png", png(96, 128), "image/png")})
    assert response.status_code == 200, response.text
    wait_for(lambda: ready(prometheus, "/-/ready"), 60, "Prometheus never became ready")

    # Found by DNS under the name api, the alias api-cpu answers to on the compose network.
    up = f'up{{job="{JOB}"}} == 1'
    wait_for(lambda: bool(query(prometheus, up)), 60, f"Prometheus never scraped the API: {scrape_errors(prometheus)}")
    address = stack.address(stack.container("api-cpu"))
    assert [r["metric"]["instance"] for r in query(prometheus, up)] == [f"{address}:8000"]
    restored = f'sum(tap_requests_total{{job="{JOB}",status_class="2xx"}}) >= 1'
    wait_for(lambda: bool(query(prometheus, restored)), 30, "the restore request never reached Prometheus")
    assert query(prometheus, f'count({{__name__=~"tap_.+",job="{JOB}"}}) > 10')
    (info,) = query(prometheus, f'tap_model_info{{job="{JOB}"}}')
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
