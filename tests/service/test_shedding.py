"""Early load shedding (service/shedding.py, RestoreGuard): refused from the headers, the body never read."""

import json
import socket
from urllib.parse import urlsplit

from bench.reliability.corpus import raw_png
from bench.reliability.images import png
from service.shedding import EdgeQueue, tiles_at_least

HEADERS = "POST /restore HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"


def test_tiles_at_least_is_a_lower_bound() -> None:
    assert tiles_at_least(None, 64) == tiles_at_least(0, 64) == 1
    noise = raw_png(200, 200, 16, 6, 4)  # 16-bit RGBA noise: the most bytes per pixel an upload has
    assert len(noise) > 200 * 200 * 8  # incompressible: the bound is tight here
    assert 1 < tiles_at_least(len(noise), 64) <= -(-200 * 200 // 64**2)
    assert tiles_at_least(10_000_000, 768) == 3


def test_edge_queue_counts_the_larger_of_admitted_and_reserved() -> None:
    edge = EdgeQueue()
    assert edge.why_full(in_flight=0, capacity=4, tiles=9) is None  # alone: admitted, however big
    edge.reserve(3)
    assert edge.why_full(in_flight=0, capacity=4, tiles=1) is None
    assert "queue full" in edge.why_full(in_flight=0, capacity=4, tiles=2)
    assert "queue full" in edge.why_full(in_flight=4, capacity=4, tiles=1)  # one request's 4 tiles admitted
    edge.release(3)
    assert edge.reserved == 0


def _open(url: str, head: str, body: bytes = b"") -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    return next((int(line.split(":")[1]) for line in head.split("\r\n") if line.startswith("content-length:")), 0)


def test_a_request_the_queue_cannot_take_is_refused_before_its_body_is_sent(start_server, tiny_bundle) -> None:
    """One tile of capacity, held by a request still uploading (no tile admitted in the batcher yet):
    the next one gets 503 + Retry-After from its headers alone, though its body was never sent."""
    srv = start_server(tiny_bundle, queue_size=1, retry_after_s=2)
    before = srv.metric("tap_rejections_total", reason="queue_full")
    uploading = _open(srv.url, HEADERS + "Content-Length: 100000\r\n", b"--b\r\n")
    try:
        srv.client.get("/healthz")  # the first request's headers are in: its tile is reserved
        waiting = _open(srv.url, HEADERS + "Content-Length: 50000\r\n")
        status, headers, body = _response(waiting)
        waiting.close()
        assert status == 503 and body["error"]["code"] == "queue_full", body
        assert headers["retry-after"] == "2"
        assert srv.metric("tap_rejections_total", reason="queue_full") == before + 1
    finally:
        uploading.close()  # the client gives up: its reservation must be released
    assert srv.restore(png(), degradation="rain").status_code == 200
