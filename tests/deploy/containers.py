"""podman for the container tests: the CLI with the project's containers.conf, and stand-in base images.

No registry can be reached in CI, so `python:3.11-slim`, `prom/prometheus` and `haproxy` are
replaced by stand-ins built from Debian packages: a debootstrap root filesystem (`podman import`)
with Python 3.11 as python:3.11-slim has it, and Debian's `prometheus` or `haproxy` package on top. Each stand-in is
tagged with a hash of its recipe and stays in podman's image store, so only the first run builds it.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
# pip in a build reaches the index through this machine's network and CA certificates.
BUILD_ARGS = ["--format", "docker", "--network", "host", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]
STANDIN_LABEL = "tap-restore.standin"  # value: the recipe hash; marks an image this module made

SUITE = "bookworm"  # Debian 12's python3 is 3.11, the version of python:3.11-slim
DEBOOTSTRAP_ARGS = ["--variant=minbase", "--include=python3,python3-venv,ca-certificates", SUITE]
# What makes the root filesystem stand in for python:3.11-slim: `python` on PATH, pip allowed
# outside Debian's packages (no EXTERNALLY-MANAGED), no package caches.
ROOTFS_FIXUP = """\
ln -sf /usr/bin/python3 usr/local/bin/python
rm -f usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*
"""
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
# As prom/prometheus: the binary as entrypoint, runs as nobody, data in /prometheus, wget for the
# compose healthcheck. Debian's package is an older Prometheus (2.x); the stack's config is plain.
PROMETHEUS_CONTAINERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends prometheus wget \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


# As the official haproxy image: config at /usr/local/etc/haproxy/haproxy.cfg, master-worker mode in
# the foreground, runs as the haproxy user. Debian 12's package is HAProxy 2.6, the compose file's tag.
HAPROXY_CONTAINERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends haproxy \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /usr/local/etc/haproxy
USER haproxy
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""
STANDINS = {"prometheus": PROMETHEUS_CONTAINERFILE, "haproxy": HAPROXY_CONTAINERFILE}


def recipe_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def qualified(name: str) -> str:
    """An image name as podman stores it: `prom/prometheus:v3.5.0` is docker.io's."""
    first = name.split("/")[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for uris in re.findall(r"^URIs:\s*(\S+)", sources.read_text(), re.M):
            if "security" not in uris:
                return uris
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            fields = line.split()
            if fields[:1] == ["deb"] and "security" not in line:
                return next(f for f in fields[1:] if not f.startswith("["))
    return "http://deb.debian.org/debian"


class Podman:
    """The podman CLI with the project's containers.conf (unless CONTAINERS_CONF is already set)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, env=self.env, timeout=timeout, **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """The image's labels, or None when no such image is stored."""
        if self("image", "exists", ref, check=False).returncode != 0:
            return None
        return json.loads(self("image", "inspect", "--format", "{{json .Labels}}", ref).stdout) or {}

    def build(self, *args: str, log_to: Path, timeout: float = 900) -> None:
        """`podman build` with BUILD_ARGS; the full log goes to `log_to` (shown on failure)."""
        started = time.monotonic()
        result = self("build", *BUILD_ARGS, *args, check=False, timeout=timeout, cwd=REPO)
        output = result.stdout + result.stderr
        log_to.write_text(output)
        assert result.returncode == 0, f"podman build {' '.join(args)} failed:\n{output[-6000:]}"
        log.info("podman build %s: %.1f s", " ".join(args), time.monotonic() - started)

    def logs(self, container: str) -> str:
        result = self("logs", container, check=False)
        return result.stdout + result.stderr

    def wait_exit(self, container: str, timeout_s: float) -> int | None:
        """The container's exit code once it has stopped, or None if it still runs after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = json.loads(self("inspect", "--format", "{{json .State}}", container).stdout)
            if not state["Running"] and state["Status"] in ("exited", "stopped"):
                return state["ExitCode"]
            time.sleep(0.5)
        return None


def podman_or_skip() -> Podman:
    """A working podman; the only reason these tests skip is that podman cannot run at all."""
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman not installed (Debian: apt-get install -y podman; .ci/system-deps.sh installs it)")
    podman = Podman(binary)
    info = podman("info", "--format", "json", check=False, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here (podman info failed): {info.stderr.strip()[-500:]}")
    return podman


def python_base(podman: Podman, workdir: Path) -> str:
    """The image to build FROM instead of python:3.11-slim: TAP_TEST_PYTHON_IMAGE, else the stand-in."""
    if os.environ.get("TAP_TEST_PYTHON_IMAGE"):
        return os.environ["TAP_TEST_PYTHON_IMAGE"]
    key = recipe_key(DEBOOTSTRAP_ARGS, ROOTFS_FIXUP, IMPORT_CHANGES)
    tag = f"localhost/tap-restore-standin/python:3.11-{key}"
    if podman.image_labels(tag) is not None:
        return tag
    debootstrap = shutil.which("debootstrap")
    assert debootstrap, "debootstrap is needed once to build the stand-in base (apt-get install -y debootstrap)"
    assert os.geteuid() == 0, "debootstrap needs root; or set TAP_TEST_PYTHON_IMAGE=python:3.11-slim (the real base)"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            [debootstrap, *DEBOOTSTRAP_ARGS, str(rootfs), debian_mirror()], capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"debootstrap failed:\n{(result.stdout + result.stderr)[-4000:]}"
        subprocess.run(["sh", "-ec", ROOTFS_FIXUP], cwd=rootfs, check=True)
        changes = [arg for change in [*IMPORT_CHANGES, f"LABEL {STANDIN_LABEL}={key}"] for arg in ("--change", change)]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", *changes, "-", tag, stdin=tar.stdout, timeout=300)
        assert tar.wait() == 0
    log.info("stand-in python base %s built in %.1f s", tag, time.monotonic() - started)
    return tag


def standin_image(podman: Podman, name: str, base: str, workdir: Path) -> str:
    """`name` (prom/prometheus or haproxy) as a stored image: the real one if it is there, else a
    stand-in from Debian's package, built FROM `base`."""
    name = qualified(name)
    containerfile = STANDINS[name.rsplit("/", 1)[-1].split(":")[0]]
    key = recipe_key(containerfile, base)
    labels = podman.image_labels(name)
    if labels is not None and STANDIN_LABEL not in labels:
        return name  # the real image, pulled where a registry can be reached
    if labels is not None and labels[STANDIN_LABEL] == key:
        return name
    context = workdir / f"{key}-standin"
    context.mkdir(exist_ok=True)
    (context / "Containerfile").write_text(containerfile.format(base=base))
    podman.build("--label", f"{STANDIN_LABEL}={key}", "-t", name, str(context), log_to=context / "build.log")
    return name
