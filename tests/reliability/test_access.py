"""Access: the optional API key, CORS, and serving from a read-only filesystem (issue 7).

The API key and CORS origins come from TAP_* environment variables here, as in a container.
"""

import os
import re
import shutil
import stat
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.reliability.images import png
from bench.reliability.scenario import BASE
from bench.reliability.server import ServerProcess

API_KEY = "s3cret-Key"
ALLOWED = "https://app.example"
DISALLOWED = "https://evil.example"
GUARDED = re.compile(r"^/(restore$|admin/)")  # the routes the key protects; every other one stays open


@pytest.fixture(scope="module")
def keyed_server(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**BASE, "api_key": API_KEY, "cors_origins": [ALLOWED, "https://other.example"]}
    with ServerProcess(tiny_bundle, tmp_path_factory.mktemp("keyed") / "server.log", settings) as server:
        yield server


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "APIKey"


def test_every_route_is_either_guarded_by_the_key_or_deliberately_open(keyed_server):
    """Walks the schema, so a route added later without (or with) the key fails here."""
    spec = keyed_server.client.get("/openapi.json").json()  # the schema and /docs stay open
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            response = keyed_server.client.request(method, path)
            if GUARDED.match(path):
                assert_unauthorized(response)
                assert operation.get("security"), f"{method} {path} needs a key but the schema does not say so"
            else:
                assert response.status_code == 200, f"{method} {path}: {response.status_code}"
                assert "security" not in operation
    assert keyed_server.client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"X-API-Key": "wrong"}, {}),
        ({"X-API-Key": ""}, {}),
        ({"X-API-Key": API_KEY.upper()}, {}),  # compared exactly
        ({}, {"api_key": API_KEY}),  # only the header counts
        ({"Authorization": f"Bearer {API_KEY}"}, {}),
    ],
    ids=["none", "wrong", "empty", "wrong-case", "query-string", "bearer"],
)
def test_wrong_or_missing_key_is_refused(keyed_server, headers, params):
    files = {"image": ("a.png", png(), "image/png")}
    assert_unauthorized(keyed_server.client.post("/restore", files=files, headers=headers, params=params))
    assert_unauthorized(keyed_server.client.post("/admin/reload-prompts", headers=headers, params=params))


def test_right_key_works_and_is_checked_before_the_body_is_read(keyed_server):
    ok = keyed_server.restore(png(), degradation="rain", headers={"x-api-key": API_KEY})  # header names: any case
    assert ok.status_code == 200
    assert keyed_server.client.post("/admin/reload-prompts", headers={"X-API-Key": API_KEY}).status_code == 200
    oversized = b"\0" * (BASE["max_upload_bytes"] + 1)
    assert_unauthorized(keyed_server.restore(oversized))  # 401, not 413: anonymous uploads are never read


def preflight(server: ServerProcess, origin: str):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }
    return server.client.options("/restore", headers=headers)


def test_cors_answers_configured_origins_only(keyed_server):
    allowed = preflight(keyed_server, ALLOWED)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "POST" in allowed.headers["access-control-allow-methods"]
    denied = preflight(keyed_server, DISALLOWED)
    assert "access-control-allow-origin" not in denied.headers

    # Errors reach the page too (a browser hides responses without the header), Retry-After included.
    refused = keyed_server.restore(png(), headers={"Origin": ALLOWED})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ALLOWED
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()
    other = keyed_server.client.get("/healthz", headers={"Origin": DISALLOWED})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_without_configured_origins_no_cors_headers(shared_server):
    assert "access-control-allow-origin" not in preflight(shared_server, ALLOWED).headers


# ---- read-only filesystem -------------------------------------------------------------------

# Syscalls that create, change or remove a path; open* count only with a write flag.
WRITE_CALLS = re.compile(
    r"^(?:\d+ +)?(open|openat|openat2|creat|mkdir|mkdirat|rename|renameat|renameat2|unlink|unlinkat|rmdir|link|linkat"
    r"|symlink|symlinkat|truncate|chmod|fchmodat|chown|lchown|fchownat|utimensat|utimes|mknod|mknodat)\((.*)"
)
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def strace_prefix(trace: Path) -> list[str] | None:
    """strace following every thread and child, file syscalls only; None when strace cannot run here."""
    if shutil.which("strace") is None:
        return None
    options = ["-f", "-qq", "--seccomp-bpf", "-e", "trace=%file"]
    probe = subprocess.run(["strace", *options, "-o", os.devnull, "true"], capture_output=True, timeout=30)
    return ["strace", *options, "-o", str(trace)] if probe.returncode == 0 else None


def written_paths(trace: Path, cwd: Path) -> set[str]:
    """Every path the traced process tried to create, modify or remove, made absolute against `cwd`."""
    paths = set()
    for line in trace.read_text(errors="replace").splitlines():
        match = WRITE_CALLS.match(line)
        if match is None:
            continue
        call, args = match.groups()
        if call.startswith("open") and not any(flag in args for flag in WRITE_FLAGS):
            continue
        for path in QUOTED.findall(args):
            paths.add(os.path.normpath(cwd / path))  # absolute paths stay as they are
    return paths


def spooled_png() -> bytes:
    """A small PNG padded past Starlette's 1 MB in-memory limit by a private chunk, so the upload spools to disk."""
    data = png()
    padding = b"\0" * 1_200_000
    chunk = struct.pack(">I", len(padding)) + b"prVt" + padding + struct.pack(">I", zlib.crc32(b"prVt" + padding))
    return data[:-12] + chunk + data[-12:]  # before IEND


@pytest.fixture(scope="module")
def read_only(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server whose working directory, HOME and bundle are read-only; TMPDIR is its one writable place.

    As in the containers (docker/Dockerfile.cpu: PYTHONDONTWRITEBYTECODE=1, TMPDIR=/tmp), but with
    HOME read-only too, so ORT_DISABLE_TELEMETRY=1 is set: without it onnxruntime creates
    $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} and $TMPDIR/.ses
    at session creation (harmless with the images' HOME=/tmp; reported). Root ignores file modes,
    so where strace can run, every write the server attempts is recorded and audited.
    """
    root = tmp_path_factory.mktemp("read-only")
    bundle = Path(shutil.copytree(tiny_bundle, root / "bundle"))
    cwd, home, tmpdir = root / "cwd", root / "home", root / "tmp"
    for folder in (cwd, home, tmpdir):
        folder.mkdir()
    locked = [bundle, *bundle.rglob("*"), cwd, home]
    for path in locked:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    trace = root / "strace.log"
    prefix = strace_prefix(trace)
    env = {"HOME": str(home), "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1", "ORT_DISABLE_TELEMETRY": "1"}
    before = {path: path.stat().st_mtime_ns for path in locked}
    with ServerProcess(bundle, root / "server.log", BASE, cwd=cwd, env=env, prefix=prefix or ()) as server:
        yield {"server": server, "trace": trace if prefix else None, "cwd": cwd, "tmpdir": tmpdir, "before": before}
    for path in locked:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_serves_with_read_only_cwd_home_and_bundle(read_only):
    server = read_only["server"]
    assert server.client.get("/readyz").json()["ready"] is True
    assert server.restore(png(), degradation="rain").status_code == 200
    assert server.restore(spooled_png(), degradation="auto").status_code == 200
    assert server.client.post("/admin/reload-prompts").status_code == 200
    assert server.client.get("/v1/degradations").status_code == 200
    assert server.client.get("/metrics").status_code == 200
    after = {path: path.stat().st_mtime_ns for path in read_only["before"]}
    assert after == read_only["before"]


def test_writes_nothing_outside_tmpdir(read_only):
    """Stops the module's server (so it runs last) and audits everything it tried to write."""
    if read_only["trace"] is None:
        pytest.skip("strace is not installed or cannot trace here: the write audit needs it")
    server = read_only["server"]
    assert server.restore(spooled_png(), degradation="rain").status_code == 200
    server.stop()
    written = written_paths(read_only["trace"], read_only["cwd"])
    inside = {path for path in written if Path(path).is_relative_to(read_only["tmpdir"])}
    assert len(inside) > 1, "the spooled upload never reached TMPDIR"
    outside = sorted(path for path in written - inside if not path.startswith("/dev/"))
    assert not outside, outside
