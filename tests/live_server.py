"""create_app(settings) served by a real uvicorn in a thread on 127.0.0.1:<free port>, for tests.

A helper module, not a conftest, so any test package imports it. Its client opens a fresh
connection per request: uvicorn closes idle keep-alive connections after 5 s, and a client that
reuses one just as it closes gets `Connection reset by peer` (seen once from `metric()` in a
fresh clone's `make test`).
"""

import socket
import threading
import time

from bench.reliability.server import loopback_client
from service.settings import Settings


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from service.app import create_app

        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.client = loopback_client(self.url)

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
