"""The deployment files under test, loaded once (dashboard JSON, Grafana provisioning); podman and its base image."""

import json
from pathlib import Path

import pytest

from tests.deploy.containers import Podman, podman_or_skip, python_base

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = REPO / "docker/grafana/dashboards/tap-restore.json"
DATASOURCES_PATH = REPO / "docker/grafana/provisioning/datasources/prometheus.yml"
# Panels whose description starts with this may show no data (they read NVML, absent on CPU).
GPU_ONLY_PREFIX = "GPU only"


@pytest.fixture(scope="session")
def dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


@pytest.fixture(scope="session")
def datasource_uid() -> str:
    """The uid of the one provisioned datasource, which every panel must name."""
    yaml = pytest.importorskip("yaml")
    (source,) = yaml.safe_load(DATASOURCES_PATH.read_text())["datasources"]
    return source["uid"]


@pytest.fixture(scope="session")
def gpu_only_ids(dashboard: dict) -> set[int]:
    return {p["id"] for p in dashboard["panels"] if p.get("description", "").startswith(GPU_ONLY_PREFIX)}


@pytest.fixture(scope="session")
def podman() -> Podman:
    """The podman CLI (tests/deploy/containers.py); skips only where podman cannot run at all."""
    return podman_or_skip()


@pytest.fixture(scope="session")
def python_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the Dockerfiles build FROM instead of python:3.11-slim (a cached stand-in here)."""
    return python_base(podman, tmp_path_factory.mktemp("standin"))
