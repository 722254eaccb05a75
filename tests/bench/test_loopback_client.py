"""bench.reliability.server.loopback_client: one connection per request, so no idle keep-alive to race."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.reliability.server import loopback_client


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    peers: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.peers.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, list[int]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    peers: list[int] = []
    _Recorder.peers = peers
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", peers
    server.shutdown()
    server.server_close()


def test_each_request_gets_a_fresh_connection(keep_alive_server: tuple[str, list[int]]) -> None:
    url, peers = keep_alive_server
    with loopback_client(url) as client:
        for _ in range(3):
            assert client.get("/metrics").text == "ok"
    assert len(set(peers)) == 3, f"client ports {peers}: a connection was reused"


def test_a_pooled_client_would_reuse_one(keep_alive_server: tuple[str, list[int]]) -> None:
    """The control: what the first test guards against does happen with httpx's default pool."""
    url, peers = keep_alive_server
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            client.get("/metrics")
    assert len(set(peers)) == 1
