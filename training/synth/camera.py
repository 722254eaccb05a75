"""What the camera does after the weather: 8-bit JPEG.

Every real photo the service restores went through a JPEG encoder after the rain or haze was in
the scene; the synthetic inputs are exact floats, so the network never sees block artefacts and
banding under weather. A 600-step probe gained SOTS-indoor-dev +0.8 dB and left the blotches in a
dense-haze grey sky as they were (docs/training_history.md, item 22).
"""

import io

import numpy as np
from PIL import Image

from training.metrics import quantize
from training.synth.common import F32


def check_quality(quality: tuple[int, int]) -> None:
    """Refuse a JPEG quality range PIL cannot honour."""
    lo, hi = quality
    if not 1 <= lo <= hi <= 100:
        raise ValueError(f"JPEG quality range must satisfy 1 <= min <= max <= 100, got {tuple(quality)}")


def jpeg(image: np.ndarray, rng: np.random.Generator, quality: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float image in 0..1 through an 8-bit JPEG of a quality drawn from `quality` (inclusive)."""
    check_quality(quality)
    lo, hi = quality
    pixels = Image.fromarray(quantize(image))
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=int(rng.integers(lo, hi + 1)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=F32) * F32(1 / 255)
