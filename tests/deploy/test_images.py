"""The images, built and run with podman: what `docker build` + `docker run` give a user.

docker/Dockerfile.cpu is built FROM a stand-in for python:3.11-slim (tests/deploy/containers.py)
and run as its README says: read-only root filesystem, /tmp a tmpfs, the image's own non-root
user. docker/Dockerfile.gpu is built FROM the same stand-in in place of the CUDA base: that
catches a broken pip install or path in its Python stages; CUDA itself is not exercised here.
"""

import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bench.reliability.images import decode, encode, scene
from bench.reliability.server import loopback_client
from tests.conftest import SHARED_DATA
from tests.deploy.containers import Podman

pytestmark = pytest.mark.integration

CPU_IMAGE = "localhost/tap-restore:cpu"  # the name docker-compose.yml gives it
GPU_STANDIN_IMAGE = "localhost/tap-restore-test:gpu-on-python-standin"
BUNDLE = Path(__file__).resolve().parents[2] / "artifacts/default"
API_UID = "10001"
RUN_HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=512m", "--cap-drop", "ALL"]
RUN_HARDENED += ["--security-opt", "no-new-privileges"]
# Run inside an image: no torch, no C compiler or build tool on PATH, the service imports.
NO_TORCH_NO_COMPILER = """\
import importlib.util, shutil, sys
assert importlib.util.find_spec("torch") is None, "torch is installed"
found = [c for c in ("gcc", "cc", "g++", "c++", "clang", "x86_64-linux-gnu-gcc", "make", "ld") if shutil.which(c)]
assert not found, f"compilers in the image: {found}"
import service.app
print(sys.executable)
"""


def container_name(what: str) -> str:
    return f"tap-restore-test-{os.getpid()}-{what}"


def photo() -> tuple[bytes, tuple[int, int], str]:
    """A real rainy photo from the shared data, ≤ 384 px, and the degradation to ask for: `auto`.
    Where the data is absent, a drawn clear scene and `rain`: auto mode rightly leaves it as it is."""
    candidates = sorted((SHARED_DATA / "real/rain").glob("*.jpg"))
    img = Image.open(candidates[0]).convert("RGB") if candidates else Image.fromarray(scene(240, 320))
    img.thumbnail((384, 384))
    return encode(img, "JPEG", quality=92), img.size, "auto" if candidates else "rain"


@pytest.fixture(scope="session")
def cpu_image(podman: Podman, python_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    podman.build(
        "--build-arg",
        f"PYTHON_IMAGE={python_image}",
        "-f",
        "docker/Dockerfile.cpu",
        "-t",
        CPU_IMAGE,
        ".",
        log_to=tmp_path_factory.mktemp("build") / "cpu.log",
    )
    return CPU_IMAGE


@pytest.fixture(scope="module")
def api(podman: Podman, cpu_image: str) -> Iterator[tuple[str, httpx.Client]]:
    """The CPU image running detached as its README says; (container name, client on its port)."""
    name = container_name("cpu")
    podman("run", "-d", "--name", name, *RUN_HARDENED, "-p", "127.0.0.1::8000", cpu_image)
    try:
        port = podman("port", name, "8000/tcp").stdout.strip().rpartition(":")[2]
        client = loopback_client(f"http://127.0.0.1:{port}", 60)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            exited = podman.wait_exit(name, 0)
            assert exited is None, f"container exited {exited} before ready:\n{podman.logs(name)[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in 120 s:\n{podman.logs(name)[-4000:]}"
            time.sleep(0.5)
        yield name, client
        client.close()
    finally:
        podman("rm", "-f", "-v", "-t", "5", name, check=False)


def test_cpu_image_runs_read_only_as_its_non_root_user(podman: Podman, api: tuple[str, httpx.Client]) -> None:
    name, client = api
    assert podman("exec", name, "id", "-u").stdout.strip() == API_UID
    write = podman("exec", name, "python", "-c", "open('/app/x', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    podman("exec", name, "python", "-c", "open('/tmp/x', 'w')")  # the tmpfs is the writable place
    ready = client.get("/readyz").json()
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    assert ready["ready"] is True and ready["model_version"] == manifest["model_version"]
    assert ready["execution_provider"] == "CPUExecutionProvider"


def test_cpu_image_restores_a_real_photo_and_counts_it(api: tuple[str, httpx.Client]) -> None:
    _, client = api
    data, size, degradation = photo()
    files = {"image": ("rain.jpg", data, "image/jpeg")}
    response = client.post("/restore", files=files, data={"degradation": degradation})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/")
    restored = decode(response.content)
    assert restored.size == size and restored.mode == "RGB"
    assert restored.tobytes() != Image.open(io.BytesIO(data)).convert("RGB").tobytes()

    metrics = client.get("/metrics").text
    served = [line for line in metrics.splitlines() if line.startswith("tap_requests_total{") and '"2xx"' in line]
    assert served and sum(float(line.rpartition(" ")[2]) for line in served) >= 1, metrics[:2000]
    assert 'tap_model_info{execution_provider="CPUExecutionProvider"' in metrics


def test_cpu_image_healthcheck_passes(podman: Podman, api: tuple[str, httpx.Client]) -> None:
    name, _ = api
    health = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", CPU_IMAGE).stdout)
    assert health and "/readyz" in " ".join(health["Test"]), "HEALTHCHECK kept in the image (docker format)"
    podman("healthcheck", "run", name)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
    assert status == "healthy"


def test_cpu_image_has_no_torch_and_no_compiler(podman: Podman, cpu_image: str) -> None:
    result = podman("run", "--rm", *RUN_HARDENED, cpu_image, "python", "-c", NO_TORCH_NO_COMPILER)
    assert result.stdout.strip() == "/opt/venv/bin/python"


def test_cpu_image_refuses_a_tampered_bundle(podman: Podman, cpu_image: str, tmp_path: Path) -> None:
    """A bundle mounted at /models with one changed byte: the container exits, naming the file."""
    bundle = tmp_path / "tampered"
    bundle.mkdir()
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    for relpath in ["manifest.json", *manifest["files"]]:
        (bundle / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUNDLE / relpath, bundle / relpath)
    backbone = bundle / manifest["backbone"]["file"]
    with backbone.open("r+b") as f:
        f.seek(backbone.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's uid 10001

    name = container_name("tampered")
    podman("run", "-d", "--name", name, *RUN_HARDENED, "-v", f"{tmp_path}:/models:ro", "-e",
           "TAP_BUNDLE_PATH=/models/tampered", cpu_image)  # fmt: skip
    try:
        exit_code = podman.wait_exit(name, 90)
        logs = podman.logs(name)
        assert exit_code is not None, f"still running with a tampered bundle:\n{logs[-3000:]}"
        assert exit_code != 0
        assert f"/models/tampered/{manifest['backbone']['file']}: sha256 mismatch" in logs, logs[-3000:]
    finally:
        podman("rm", "-f", "-v", "-t", "5", name, check=False)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_gpu_image_python_stages_build_on_a_stand_in_base(podman: Podman, python_image: str, tmp_path: Path) -> None:
    """Dockerfile.gpu with CUDA_IMAGE=the Python stand-in: pip installs onnxruntime-gpu + the [gpu]
    extra, the venv is copied to the runtime stage and imports there. No CUDA library is present."""
    podman.build(
        "--build-arg",
        f"CUDA_IMAGE={python_image}",
        "-f",
        "docker/Dockerfile.gpu",
        "-t",
        GPU_STANDIN_IMAGE,
        ".",
        log_to=tmp_path / "gpu.log",
    )
    check = NO_TORCH_NO_COMPILER + (
        "import onnxruntime, pynvml\n"
        "providers = onnxruntime.get_available_providers()\n"
        "assert 'CUDAExecutionProvider' in providers, providers\n"
        "assert onnxruntime.__file__.startswith('/opt/venv/')\n"
    )
    result = podman("run", "--rm", *RUN_HARDENED, GPU_STANDIN_IMAGE, "python", "-c", check)
    assert result.stdout.strip() == "/opt/venv/bin/python"
    env = podman("image", "inspect", "--format", "{{json .Config.Env}}", GPU_STANDIN_IMAGE).stdout
    assert "TAP_DEVICE=cuda" in env and "TAP_BUNDLE_PATH=/app/artifacts/default" in env
    podman("run", "--rm", *RUN_HARDENED, GPU_STANDIN_IMAGE, "tap-restore", "serve", "--help")
    assert podman("run", "--rm", GPU_STANDIN_IMAGE, "id", "-u").stdout.strip() == API_UID
