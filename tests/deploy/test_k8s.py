"""deploy/k8s: both overlays rendered with kustomize and validated against the Kubernetes schemas, offline.

kubernetes-validate ships the OpenAPI-derived JSON schemas of every Kubernetes release in its
package, so nothing is downloaded. Rendering needs `kubectl kustomize` (kubectl on PATH); the base
files are validated without it. No cluster runs here: what a cluster would do is not tested.
"""

import copy
import shutil
import subprocess

import pytest

from service import metrics
from tests.deploy.conftest import REPO

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate not installed (pip install -e '.[dev]')"
)

K8S = REPO / "deploy/k8s"
OVERLAYS = ("cpu", "gpu")
# preStop's sleep action is GA from 1.30; 1.37 is the newest schema kubernetes-validate 1.37 ships.
VERSIONS = ("1.30.0", "1.37.0")
CAPACITY_METRIC = "tap_queue_depth"


def render(overlay: str) -> dict[str, dict]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>`, by kind."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: it renders the kustomize overlays")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout)}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict]]:
    return request.param, render(request.param)


def validate(doc: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or wrong field


def test_base_files_validate_without_kustomize() -> None:
    files = sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) == 4
    for path in files:
        validate(yaml.safe_load(path.read_text()))


def test_the_validator_catches_a_misspelled_field() -> None:
    doc = yaml.safe_load((K8S / "base/deployment.yaml").read_text())
    broken = copy.deepcopy(doc)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_overlay_renders_and_validates(rendered: tuple[str, dict[str, dict]]) -> None:
    _, docs = rendered
    assert set(docs) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for doc in docs.values():
        validate(doc)


def test_pods_are_probed_hardened_and_scraped(rendered: tuple[str, dict[str, dict]]) -> None:
    overlay, docs = rendered
    pod = docs["Deployment"]["spec"]["template"]
    (api,) = pod["spec"]["containers"]
    assert api["image"] == f"tap-restore:{overlay}"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    security = api["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and security["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the images' user
    assert {m["mountPath"] for m in api["volumeMounts"]} == {"/tmp"}, "only /tmp is writable"
    env = {e["name"]: e["value"] for e in api["env"]}
    assert env["TAP_DEVICE"] == {"cpu": "cpu", "gpu": "cuda"}[overlay]
    assert env["TAP_BUNDLE_PATH"] == "/app/artifacts/default", "the bundle baked into the image"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(env["TAP_REQUEST_TIMEOUT_S"]) + api["lifecycle"]["preStop"]["sleep"]["seconds"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(api["ports"][0]["containerPort"])
    limits = api["resources"]["limits"]
    if overlay == "gpu":
        assert limits["nvidia.com/gpu"] == 1
    else:
        assert "nvidia.com/gpu" not in limits


def test_service_budget_and_autoscaler_point_at_the_deployment(rendered: tuple[str, dict[str, dict]]) -> None:
    _, docs = rendered
    deployment = docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tap-restore"}
    assert hpa["minReplicas"] >= 2, "one pod left could not take a disruption"
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == CAPACITY_METRIC


def test_prometheus_adapter_serves_the_autoscalers_metric() -> None:
    assert metrics.QUEUE_DEPTH._name == CAPACITY_METRIC, "the service exports the metric the HPA scales on"
    values = yaml.safe_load((K8S / "prometheus-adapter/values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == CAPACITY_METRIC
    assert rule["seriesQuery"].startswith(CAPACITY_METRIC + "{")
    assert CAPACITY_METRIC in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
