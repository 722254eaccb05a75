"""The hostile-input corpus as one ordered list of probes, each with the answer the service documents.

BAD_INPUTS and GOOD_ODDITIES are the probes tests/service/test_app.py checks one at a time on an
in-process server; EXTRA adds header-only bombs in the other accepted formats, metadata bombs,
16-bit colour PNGs, malformed multipart and more hostile names. A probe sends through any server
object with `.client` (httpx) and `.restore(...)`: tests' LiveServer or bench.reliability's
ServerProcess. Statuses assume bench.reliability.scenario BASE settings (2 MB uploads, 10 MP,
64-px tiles).
"""

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
from PIL import Image

from bench.reliability.images import decode, encode, png, png_chunk, png_header_only, scene

Send = Callable[[object], httpx.Response]


@dataclass(frozen=True)
class Probe:
    name: str
    send: Send
    status: int
    code: str | None = None  # the JSON error code, for error statuses
    output: tuple[str, tuple[int, int]] | None = None  # (mode, size) of the restored image, for 200


def raw_png(width: int, height: int, bit_depth: int, color_type: int, channels: int, extra: bytes = b"") -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): noise rows, optional extra chunks."""
    rng = np.random.default_rng(0)
    row_bytes = width * channels * bit_depth // 8
    rows = b"".join(b"\0" + rng.integers(0, 256, row_bytes, dtype=np.uint8).tobytes() for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 claiming width x height, EOI: no pixel data at all."""
    components = b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + components + b"\xff\xd9"


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose screen and only frame claim width x height, with a 1-pixel LZW stream."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + frame + b"\x08\x02\x4c\x01\x00\x3b"


def tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose only IFD claims a width x height 8-bit gray strip."""
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 8)]
    tags += [(277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in tags) + bytes(4)
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def text_bomb(kind: bytes, keyword: bytes) -> bytes:
    """A metadata chunk (zTXt, iCCP) that inflates to 16 MB (Pillow caps text chunks at 1 MB)."""
    return png_chunk(kind, keyword + b"\0\0" + zlib.compress(b"\0" * 16_000_000, 9))


def animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (30, 220)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=40)
    return buf.getvalue()


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(scene(20, 40), "JPEG", exif=exif.tobytes())


def palette_with_transparency() -> bytes:
    return encode(Image.fromarray(scene(16, 16)).quantize(8), transparency=0)


GOOD_ODDITIES = {  # name: (bytes, expected output (mode, size))
    "1x1": (encode(np.array([[[9, 99, 199]]], np.uint8)), ("RGB", (1, 1))),
    "animated-gif": (animated_gif(), ("RGB", (30, 20))),
    "cmyk-jpeg": (encode(Image.fromarray(scene(24, 24)).convert("CMYK"), "JPEG"), ("RGB", (24, 24))),
    "16-bit-png": (encode(Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100)), ("I;16", (20, 20))),
    "gray-alpha": (encode(Image.fromarray(scene(16, 20)[:, :, :2])), ("LA", (20, 16))),
    "palette-transparency": (palette_with_transparency(), ("RGBA", (16, 16))),
    "exif-rotated-jpeg": (exif_rotated_jpeg(), ("RGB", (20, 40))),
    "png-sent-as-text/plain": (png(), ("RGB", (64, 48))),
}


def multipart(server, files=None, data=None, **kwargs):
    return server.client.post("/restore", files=files, data=data, **kwargs)


BAD_INPUTS = {  # name: (request builder, status, code, rejection reason)
    "empty-body": (lambda s: s.client.post("/restore"), 422, "bad_request", "bad_request"),
    "zero-byte-file": (lambda s: s.restore(b""), 422, "bad_image", "bad_image"),
    "text-named-png": (lambda s: s.restore(b"just some text\n" * 10), 415, "unsupported_media_type", "bad_image"),
    "truncated-png": (lambda s: s.restore(encode(scene(64, 64))[:300]), 422, "bad_image", "bad_image"),
    "truncated-jpeg": (lambda s: s.restore(encode(scene(64, 64), "JPEG")[:400]), 422, "bad_image", "bad_image"),
    "json-body": (
        lambda s: s.client.post("/restore", json={"image": "x"}),
        415,
        "unsupported_media_type",
        "bad_request",
    ),
    "bomb-50000x50000": (lambda s: s.restore(png_header_only(50_000, 50_000)), 413, "too_large", "too_large"),
    "elongated-1x2000000": (
        lambda s: s.restore(encode(np.zeros((1, 2_000_000, 3), np.uint8))),
        413,
        "too_large",
        "too_large",
    ),
    "oversized-upload": (lambda s: s.restore(b"\0" * 2_100_000), 413, "too_large", "too_large"),
    "oversized-chunked": (
        lambda s: s.client.post(
            "/restore",
            content=iter(
                [b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'] + [b"\0" * 100_000] * 25
            ),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ),
        413,
        "too_large",
        "too_large",
    ),
    "missing-field": (
        lambda s: multipart(s, files={"photo": ("a.png", png(), "image/png")}),
        422,
        "bad_request",
        "bad_request",
    ),
    "unknown-degradation": (lambda s: s.restore(png(), degradation="fog"), 422, "unknown_degradation", "bad_request"),
    "path-degradation": (
        lambda s: s.restore(png(), degradation="../../etc/passwd"),
        422,
        "unknown_degradation",
        "bad_request",
    ),
    "slash-degradation": (
        lambda s: s.restore(png(), degradation="rain/..%2f"),
        422,
        "unknown_degradation",
        "bad_request",
    ),
    "bad-format": (lambda s: s.restore(png(), format="gif"), 422, "bad_request", "bad_request"),
    "bad-quality": (lambda s: s.restore(png(), format="jpeg", quality="0"), 422, "bad_request", "bad_request"),
}


def _upload(data: bytes, **form: str) -> Send:
    return lambda server: server.restore(data, filename="upload.bin", content_type="application/octet-stream", **form)


def _raw_multipart(body: str, content_type: str = "multipart/form-data; boundary=b") -> Send:
    return lambda server: server.client.post("/restore", content=body.encode(), headers={"Content-Type": content_type})


def _fields(count: int, filename: bool) -> str:
    disposition = 'name="image"; filename="a.png"' if filename else 'name="field"'
    return f"--b\r\nContent-Disposition: form-data; {disposition}\r\n\r\nx\r\n" * count + "--b--\r\n"


_gif = encode(Image.fromarray(scene(20, 30)), "GIF")
_webp = encode(scene(40, 40), "WEBP")
_apng = encode(Image.fromarray(scene(20, 20)), "PNG", save_all=True, append_images=[Image.fromarray(scene(20, 20, 1))])
_float_tiff = encode(Image.fromarray(np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)), "TIFF")

EXTRA = [
    Probe("bomb-jpeg-header-65000x65000", _upload(jpeg_header(65_000, 65_000)), 413, "too_large"),
    Probe("bomb-gif-header-65535x65535", _upload(gif_header(65_535, 65_535)), 413, "too_large"),
    Probe("bomb-tiff-header-60000x60000", _upload(tiff_header(60_000, 60_000)), 413, "too_large"),
    Probe("bomb-png-ztxt-16mb", _upload(raw_png(8, 8, 8, 2, 3, text_bomb(b"zTXt", b"Comment"))), 422, "bad_image"),
    Probe("bomb-png-iccp-16mb", _upload(raw_png(8, 8, 8, 2, 3, text_bomb(b"iCCP", b"icc"))), 422, "bad_image"),
    Probe("truncated-gif", _upload(_gif[: len(_gif) // 2]), 422, "bad_image"),
    Probe("truncated-webp", _upload(_webp[: len(_webp) // 2]), 422, "bad_image"),
    Probe("ppm", _upload(b"P6\n2 2\n255\n" + bytes(12)), 415, "unsupported_media_type"),
    Probe(
        "svg", _upload(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'), 415, "unsupported_media_type"
    ),
    Probe("16-bit-rgb-png", _upload(raw_png(20, 10, 16, 2, 3)), 200, output=("RGB", (20, 10))),
    Probe("16-bit-rgba-png", _upload(raw_png(20, 10, 16, 6, 4)), 200, output=("RGBA", (20, 10))),
    # Pillow opens 16-bit gray+alpha as RGBA, so unlike 8-bit LA it comes back as colour (reported).
    Probe("16-bit-gray-alpha-png", _upload(raw_png(20, 10, 16, 4, 2)), 200, output=("RGBA", (20, 10))),
    Probe("1-bit-png", _upload(encode(Image.fromarray(scene(16, 16)).convert("1"))), 200, output=("L", (16, 16))),
    Probe("float-tiff", _upload(_float_tiff), 200, output=("I;16", (20, 20))),
    Probe("animated-png", _upload(_apng), 200, output=("RGB", (20, 20))),
    Probe(
        "filename-with-path",
        lambda server: server.restore(png(), filename="../../../etc/passwd", degradation="rain"),
        200,
        output=("RGB", (64, 48)),
    ),
    Probe("degradation-65-chars", _upload(png(), degradation="r" * 65), 422, "bad_request"),
    Probe("degradation-nul", _upload(png(), degradation="rain\0"), 422, "unknown_degradation"),
    Probe("degradation-backslashes", _upload(png(), degradation="..\\..\\windows"), 422, "unknown_degradation"),
    Probe("degradation-unicode", _upload(png(), degradation="r\u00e1in"), 422, "unknown_degradation"),
    Probe("degradation-uppercase", _upload(png(), degradation="RAIN"), 422, "unknown_degradation"),
    Probe("quality-nan", _upload(png(), format="jpeg", quality="NaN"), 422, "bad_request"),
    Probe("multipart-without-boundary", _raw_multipart("x", "multipart/form-data"), 400, "bad_request"),
    Probe("multipart-1500-fields", _raw_multipart(_fields(1500, filename=False)), 400, "bad_request"),
    Probe("multipart-1500-files", _raw_multipart(_fields(1500, filename=True)), 400, "bad_request"),
]


def _odd(data: bytes, name: str) -> Send:
    content_type = "text/plain" if "text/plain" in name else "application/octet-stream"
    return lambda server: server.restore(data, filename=f"{name}.bin", content_type=content_type, degradation="haze")


PROBES: list[Probe] = [
    *(Probe(name, send, status, code) for name, (send, status, code, _reason) in BAD_INPUTS.items()),
    *(Probe(name, _odd(data, name), 200, output=output) for name, (data, output) in GOOD_ODDITIES.items()),
    *EXTRA,
]


def check(probe: Probe, response: httpx.Response) -> str | None:
    """What is wrong with `response` for `probe`, or None when it is what the service documents."""
    if response.status_code != probe.status:
        return f"status {response.status_code}, expected {probe.status}: {response.text[:300]}"
    if probe.status == 200:
        img = decode(response.content)
        return (
            None if (img.mode, img.size) == probe.output else f"output {img.mode} {img.size}, expected {probe.output}"
        )
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"content-type {response.headers.get('content-type')!r}, expected JSON"
    body = response.json()
    if set(body) != {"error"} or body["error"].get("code") != probe.code or not body["error"].get("message"):
        return f"error body {body}, expected code {probe.code!r} and a message"
    return None


@dataclass(frozen=True)
class CorpusRun:
    statuses: dict[str, int]  # probe -> status of its last round
    problems: dict[str, str]  # probe -> what was wrong (its answer, or the normal request after it)
    rss_warm_mb: float  # after warm-up
    rss_rounds_mb: list[float]  # after each round of the whole corpus


def warm_up(server) -> None:
    """One normal request down every path the corpus takes: whole and tiled, every output format, JSON."""
    for data, form in [
        (png(), {"degradation": "rain"}),
        (encode(scene(150, 200), "JPEG"), {"degradation": "haze"}),
        (png(40, 40), {"format": "jpeg"}),
        (png(40, 40), {"format": "webp"}),
        (png(), {"headers": {"Accept": "application/json"}}),
    ]:
        response = server.restore(data, **form)
        if response.status_code != 200:
            raise RuntimeError(f"warm-up restore failed with {response.status_code}: {response.text[:300]}")


def run_corpus(server, rounds: int = 1) -> CorpusRun:
    """Every probe in order, each followed by a normal restore; `server` also needs `.rss_mb()`."""
    warm_up(server)
    rss_warm = server.rss_mb()
    statuses: dict[str, int] = {}
    problems: dict[str, str] = {}
    rss_rounds = []
    for _ in range(rounds):
        for probe in PROBES:
            response = probe.send(server)
            statuses[probe.name] = response.status_code
            if problem := check(probe, response):
                problems[probe.name] = problem
            after = server.restore(png(), degradation="rain")
            if after.status_code != 200:
                problems[probe.name] = f"next normal request got {after.status_code}: {after.text[:200]}"
        rss_rounds.append(server.rss_mb())
    return CorpusRun(statuses, problems, rss_warm, rss_rounds)
