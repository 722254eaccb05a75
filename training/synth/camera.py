"""What the camera does after the weather: 8-bit JPEG.

Every real photo the service restores went through a JPEG encoder after the rain or haze was in
the scene; the synthetic inputs are exact floats. A network that never saw block artefacts and
banding under weather treats them as structure to recover: in dense haze, where it multiplies
contrast many times, a grey JPEG sky comes back as dark blotches and streaks.
"""

import io

import numpy as np
from PIL import Image

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
    pixels = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=int(rng.integers(lo, hi + 1)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=F32) * F32(1 / 255)
