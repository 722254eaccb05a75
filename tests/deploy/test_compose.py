"""docker-compose.yml through `docker-compose config` (no engine needed), and the Dockerfiles read as text."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import DASHBOARD_PATH, REPO

yaml = pytest.importorskip("yaml")

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILES = {"cpu": REPO / "docker/Dockerfile.cpu", "gpu": REPO / "docker/Dockerfile.gpu"}
API_USER = "10001:10001"


def compose_config(*profiles: str) -> dict:
    """The file as Compose resolves it; variables from the caller's environment are left out."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install -y --no-install-recommends docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "GRAFANA_", "COMPOSE_", "DOCKER_"))}
    args = [binary, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config()


@pytest.fixture(scope="module")
def cpu_config() -> dict:
    return compose_config("cpu")


@pytest.fixture(scope="module")
def scale_config() -> dict:
    return compose_config("scale")


def assert_hardened(service: dict) -> None:
    assert service["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"])
    assert service["user"] == API_USER
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert {p["target"] for p in service["ports"]} == {8000}


def test_stack_services_ports_and_healthchecks(config: dict) -> None:
    services = config["services"]
    assert {"api", "prometheus", "grafana"} <= set(services)
    published = {name: {int(p["published"]) for p in s.get("ports", [])} for name, s in services.items()}
    assert published["api"] == {8000} and published["prometheus"] == {9090} and published["grafana"] == {3000}
    for name, service in services.items():
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    assert {"prometheus-data", "grafana-data"} <= set(config["volumes"])


def test_api_reserves_a_gpu_and_is_hardened(config: dict) -> None:
    api = config["services"]["api"]
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and device["capabilities"] == ["gpu"]
    assert api["environment"]["TAP_DEVICE"] == "cuda"
    assert api["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert_hardened(api)


def test_cpu_profile_replaces_the_api(cpu_config: dict) -> None:
    api_cpu = cpu_config["services"]["api-cpu"]
    assert api_cpu["profiles"] == ["cpu"]
    assert "deploy" not in api_cpu
    assert api_cpu["environment"]["TAP_DEVICE"] == "cpu"
    assert api_cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert "api" in api_cpu["networks"]["default"]["aliases"], "Prometheus scrapes api:8000"
    assert_hardened(api_cpu)


def test_monitoring_mounts_match_the_config_files(config: dict) -> None:
    services = config["services"]
    prometheus_mounts = {v.split(":")[1]: v for v in services["prometheus"]["volumes"]}
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"].endswith(":ro")
    grafana = services["grafana"]
    grafana_mounts = {v.split(":")[1]: v for v in grafana["volumes"]}
    assert grafana_mounts["/etc/grafana/provisioning"].endswith(":ro")
    assert grafana_mounts["/etc/grafana/dashboards"].startswith(str(DASHBOARD_PATH.parent) + ":")
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"/etc/grafana/dashboards/{DASHBOARD_PATH.name}"

    (provider,) = yaml.safe_load((REPO / "docker/grafana/provisioning/dashboards/dashboards.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"
    scrape = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())["scrape_configs"]
    (job,) = [j for j in scrape if j["job_name"] == "tap-restore"]
    (discovery,) = job["dns_sd_configs"]  # one target per container answering to "api"
    assert discovery == {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "5s"}
    assert job["scrape_interval"] == "5s"


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Instructions (continuations joined, comments dropped) by stage name."""
    lines = [line for line in dockerfile.read_text().splitlines() if not line.startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    result: dict[str, list[str]] = {}
    current = "preamble"
    for line in filter(None, (line.strip() for line in text.splitlines())):
        if line.upper().startswith("FROM "):
            current = line.split()[-1] if " AS " in line.upper() else line.split()[1]
        result.setdefault(current, []).append(line)
    return result


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_runtime_stage(flavour: str) -> None:
    built = stages(DOCKERFILES[flavour])
    assert list(built)[-2:] == ["builder", "runtime"], "multi-stage: builder, then runtime"
    runtime = "\n".join(built["runtime"])
    users = re.findall(r"^USER (\S+)", runtime, re.M)
    assert users and users[-1] == API_USER, "runs as the non-root user that docker-compose.yml names"
    (healthcheck,) = re.findall(r"^HEALTHCHECK .*", runtime, re.M)
    assert "urllib" in healthcheck and "/readyz" in healthcheck and "curl" not in healthcheck
    assert re.search(r"^EXPOSE 8000$", runtime, re.M)
    assert re.search(r"^COPY artifacts/default /app/artifacts/default$", runtime, re.M)
    assert re.search(r"TAP_BUNDLE_PATH=/app/artifacts/default\b", runtime)
    assert re.search(r"^VOLUME ", runtime, re.M)
    assert re.search(r"^COPY --from=builder /opt/venv /opt/venv$", runtime, re.M)
    for banned in ("torch", "pip install", "build-essential", "gcc", "g++", "-dev ", "curl"):
        assert banned not in runtime, f"runtime stage of Dockerfile.{flavour} mentions {banned!r}"


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_installs_no_torch(flavour: str) -> None:
    builder = "\n".join(stages(DOCKERFILES[flavour])["builder"])
    assert "[train" not in builder and "pip install torch" not in builder
    assert "pip install --no-deps ." in builder, "the package goes in without re-resolving its dependencies"
    assert "find_spec('torch') is not None" in builder, "the build fails if torch slipped in"
    wheel = {"cpu": "onnxruntime==", "gpu": "onnxruntime-gpu=="}[flavour]
    assert wheel in builder
    if flavour == "cpu":
        assert "onnxruntime-gpu" not in builder


def test_gpu_image_has_cuda13_and_cudnn9() -> None:
    text = DOCKERFILES["gpu"].read_text()
    (base,) = re.findall(r"^ARG CUDA_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base)


def test_dockerignore_allows_exactly_what_is_copied() -> None:
    rules = [r for r in (REPO / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*", "allowlist: ignore everything, then re-include"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for dockerfile in DOCKERFILES.values():
        for line in stages(dockerfile)["builder"] + stages(dockerfile)["runtime"]:
            if line.startswith("COPY ") and "--from=" not in line:
                sources = line.split()[1:-1]
                assert set(sources) <= allowed, f"{dockerfile.name}: {line} copies something .dockerignore drops"
    assert not allowed & {".venv", ".git", "runs", "tests", "docs"}


def test_scale_profile_puts_replicas_behind_the_load_balancer(scale_config: dict) -> None:
    services = scale_config["services"]
    replica, lb = services["api-replica"], services["lb"]
    assert replica["profiles"] == ["scale"] and lb["profiles"] == ["scale"]
    assert replica["deploy"]["replicas"] == 2
    assert "api" in replica["networks"]["default"]["aliases"], "HAProxy and Prometheus find replicas as api"
    assert not replica.get("ports"), "replicas are reached through the load balancer only"
    assert {int(p["published"]) for p in lb["ports"]} == {8000}
    assert_hardened({**replica, "ports": [{"target": 8000}]})
    mounts = {v.split(":")[1]: v for v in lb["volumes"]}
    assert mounts["/usr/local/etc/haproxy/haproxy.cfg"].endswith(":ro")


HAPROXY_CFG = REPO / "docker/haproxy/haproxy.cfg"


def test_haproxy_config_checks_readiness_and_retries_only_what_is_safe() -> None:
    text = HAPROXY_CFG.read_text()
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "http-check send meth GET uri /readyz" in lines and "http-check expect status 200" in lines
    assert "server-template api 8 api:8000" in lines, "replicas found by DNS under the name api"
    assert "option redispatch 1" in lines, "a retry goes to another replica"
    retry_on = next(line for line in lines if line.startswith("retry-on "))
    assert "503" not in retry_on.split(), "the service's 503 + Retry-After passes through to the client"
    assert "http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS" in lines
    timeout_server = next(line for line in lines if line.startswith("timeout server "))
    assert int(timeout_server.split()[-1].rstrip("s")) > 60, "longer than the service's request deadline"


def test_haproxy_accepts_the_config() -> None:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy not installed (Debian: apt-get install -y --no-install-recommends haproxy)")
    result = subprocess.run([binary, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
