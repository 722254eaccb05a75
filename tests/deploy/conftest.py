"""The deployment files under test, loaded once: dashboard JSON and Grafana provisioning."""

import json
from pathlib import Path

import pytest

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
