"""Static checks of the Grafana dashboard JSON: what file provisioning needs to load it as is."""

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.deploy.conftest import DASHBOARD_PATH, REPO

GRID_COLUMNS = 24


def walk(node: object, path: str = "$"):
    """Every (json path, value) pair of a JSON document."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def test_uids_and_panel_ids_are_unique(dashboard: dict) -> None:
    assert dashboard["uid"] == "tap-restore"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids), f"duplicate panel ids: {[i for i, n in Counter(ids).items() if n > 1]}"
    uids = [value for path, value in walk(dashboard) if path.endswith(".uid") and ".datasource." not in path]
    assert len(set(uids)) == len(uids)
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles)


def test_every_datasource_is_the_provisioned_one(dashboard: dict, datasource_uid: str) -> None:
    expected = {"type": "prometheus", "uid": datasource_uid}
    found = [(path, value) for path, value in walk(dashboard) if path.endswith(".datasource")]
    assert found
    wrong = [(path, value) for path, value in found if value != expected]
    assert not wrong, f"datasource must be {expected}: {wrong}"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == expected
        assert all(target["datasource"] == expected for target in panel["targets"])


def test_no_import_time_inputs() -> None:
    """File provisioning never resolves ${DS_...} or __inputs: they would break every panel."""
    text = DASHBOARD_PATH.read_text()
    assert "${DS_" not in text
    assert "__inputs" not in text
    assert "__requires" not in text


def test_every_panel_has_a_query(dashboard: dict) -> None:
    for panel in dashboard["panels"]:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no targets"
        assert all(t.get("expr", "").strip() for t in targets), f"panel {panel['title']!r} has an empty expr"
        refs = [t["refId"] for t in targets]
        assert len(set(refs)) == len(refs), f"panel {panel['title']!r} repeats a refId"


def test_only_known_grafana_variables(dashboard: dict) -> None:
    """The exprs use Grafana's built-in interval variables only (no templating to resolve)."""
    assert dashboard["templating"]["list"] == []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert set(re.findall(r"\$\w+", target["expr"])) <= {"$__rate_interval", "$__range"}, target["expr"]


def test_layout_fits_the_grid_without_overlap(dashboard: dict) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_gpu_only_panels_are_exactly_the_gpu_metrics(dashboard: dict, gpu_only_ids: set[int]) -> None:
    """The integration test lets these panels be empty; nothing else may hide behind the tag."""
    reads_gpu = {p["id"] for p in dashboard["panels"] if any("tap_gpu_" in t["expr"] for t in p["targets"])}
    assert gpu_only_ids == reads_gpu
    assert len(gpu_only_ids) == 2


def test_required_panels_are_present(dashboard: dict) -> None:
    """The issue's list: each topic appears in some panel's queries."""
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "tap_requests_total",
        "tap_request_duration_seconds_bucket",
        "tap_queue_wait_seconds_bucket",
        "tap_inference_duration_seconds_bucket",
        "tap_batch_size_sum",
        "tap_queue_depth",
        "tap_rejections_total",
        "tap_auto_decisions_total",
        "tap_megapixels_restored_total",
        "tap_tiles_per_request",
        "tap_input_megapixels",
        "tap_model_info",
        "tap_gpu_memory_used_bytes",
        "tap_gpu_utilization_ratio",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert metric in exprs, f"no panel queries {metric}"
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(tap_request_duration_seconds_bucket" in exprs


def test_layout_picture_renders(dashboard: dict, tmp_path: Path) -> None:
    """The README picture is drawn from this JSON; the script must keep working as the JSON changes."""
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("render_layout", REPO / "docker/grafana/render_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "layout.png"
    module.render(dashboard, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Grafana migrates older dashboards on load; from schema 36 on it takes datasource refs ({type, uid})
# as written, so the uid must be the provisioned one. 41 is the newest schema Grafana 12.2 writes.
GRAFANA_SCHEMA_VERSIONS = range(36, 42)


def test_files_are_what_grafana_12_provisioning_loads(dashboard: dict) -> None:
    """Grafana is not run in CI: its inputs are checked against what it reads (docs: provisioning)."""
    yaml = pytest.importorskip("yaml")
    assert dashboard["schemaVersion"] in GRAFANA_SCHEMA_VERSIONS
    assert isinstance(dashboard["version"], int) and "id" not in dashboard, "file dashboards carry no database id"
    provisioning = REPO / "docker/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    dashboards = yaml.safe_load((provisioning / "dashboards/dashboards.yml").read_text())
    assert datasources["apiVersion"] == 1 and dashboards["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy" and source["isDefault"] is True
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "prometheus" in services and source["url"] == "http://prometheus:9090", "the compose service, in-network"
