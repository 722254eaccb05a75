"""Live servers on loopback (uvicorn in a thread, random free port) and image builders."""

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.settings import Settings
from training.scenes import draw_city_scene, to_uint8

# Small and fast on a shared 2-core box: 64-px tiles, one ORT thread each.
BASE = {
    "device": "cpu",
    "tile_size": 64,
    "tile_overlap": 16,
    "max_batch": 8,
    "max_delay_ms": 20,
    "intra_op_threads": 1,
    "inter_op_threads": 1,
    "max_upload_bytes": 2_000_000,
    "max_pixels": 10_000_000,
    "prompt_reload_interval_s": 0,
}


class LiveServer:
    """create_app(settings) served by a real uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from service.app import create_app

        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server failed to start (see log)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def restore(self, data: bytes, filename: str = "photo.png", content_type: str = "image/png", **kwargs):
        headers = kwargs.pop("headers", None)
        return self.client.post(
            "/restore", files={"image": (filename, data, content_type)}, data=kwargs, headers=headers
        )

    def metric(self, name: str, **labels: str) -> float:
        """Current value of one sample from /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return 0.0


@pytest.fixture(scope="session")
def start_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: start_server(bundle_path, **settings) -> a running LiveServer, stopped at session end."""
    servers: list[LiveServer] = []

    def start(bundle: Path, **overrides) -> LiveServer:
        server = LiveServer(Settings(**{**BASE, "bundle_path": bundle, **overrides})).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server, tiny_bundle: Path) -> LiveServer:
    """The shared server: tiny bundle, 64-px tiles with 16-px overlap."""
    return start_server(tiny_bundle)


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: the procedural city scene with a little sensor noise, photo-like enough."""
    return to_uint8(draw_city_scene(h, w, seed, noise=0.02))


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **options) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def png(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    return encode(scene(h, w, seed))


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img
