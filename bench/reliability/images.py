"""Image builders shared by the tests and the reliability bench: photo-like scenes, encoders, header-only bombs.

Not a test module, so bench/ and tests/ both import it without importing a conftest or a test file.
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

from training.scenes import draw_city_scene, to_uint8


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


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data: a decompression bomb probe."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )
