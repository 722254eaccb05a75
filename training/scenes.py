"""Procedural photo-like scenes: publishable stand-ins for photos.

The shared datasets may not be redistributed, so every image this project commits
(README pictures, contact sheets, screenshots) starts from one of these scenes, and so does
every image the tests and benchmarks make up. numpy and Pillow only: the service tests and
the torch-free benchmarks import it too.
"""

import numpy as np
from PIL import Image


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in 0..1: a coarse random grid upsampled bicubically."""
    grid = rng.random((cells, max(2, cells * w // h))).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0, 1)


def ridge(rng: np.random.Generator, w: int, base: float, amplitude: float, octaves: int = 4) -> np.ndarray:
    """A mountain/hill skyline: row index per column from summed 1-D noise octaves."""
    line = np.zeros(w, np.float32)
    for octave in range(octaves):
        knots = rng.random(2 + 3 * 2**octave)
        line += np.interp(np.linspace(0, len(knots) - 1, w), np.arange(len(knots)), knots) / 2**octave
    return base - amplitude * (line / line.max())


def draw_city_scene(h: int = 320, w: int = 480, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """Sky with clouds, mountains, hills, a row of lit buildings and a street: (H, W, 3) float32 0..1.

    Any size from 1x1. `noise`: std of Gaussian sensor noise added last (the scene itself does
    not change); real photos carry some, and it decides how PNG and JPEG compress them.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(h, dtype=np.float32)[:, None] / h
    sky_top, sky_low = np.array([0.25, 0.45, 0.80]), np.array([0.75, 0.85, 0.95])
    img = sky_top + (sky_low - sky_top) * rows[..., None] * 1.4
    clouds = np.clip(smooth_noise(rng, h, w, 5) * 1.6 - 0.7, 0, 1)[..., None] * (1 - rows[..., None])
    img = img * (1 - clouds) + 0.97 * clouds
    yy = np.arange(h, dtype=np.float32)[:, None]
    for base, amp, colour in ((0.55, 0.30, (0.45, 0.52, 0.66)), (0.70, 0.18, (0.28, 0.45, 0.25))):
        mask = yy >= ridge(rng, w, base * h, amp * h)[None, :]
        shade = 0.85 + 0.3 * smooth_noise(rng, h, w, 12)[..., None]
        img = np.where(mask[..., None], np.array(colour) * shade, img)
    ground = int(0.82 * h)
    x = 0
    while x < w:
        bw, bh = int(rng.integers(w // 14, max(1, w // 6))), int(rng.integers(h // 6, max(1, h // 2.2)))
        colour = rng.uniform(0.25, 0.75, 3) * np.array([1.0, 0.95, 0.9])
        top = max(0, ground - bh)
        img[top:ground, x : x + bw] = colour
        win = rng.uniform(0.7, 1.0, 3) * np.array([1.0, 0.9, 0.55])
        for wy in range(top + 6, ground - 8, 14):
            for wx in range(x + 5, x + bw - 8, 12):
                if rng.random() < 0.6:
                    img[wy : wy + 7, wx : wx + 5] = win
        x += bw + int(rng.integers(2, 12))
    img[ground:] = np.array([0.22, 0.22, 0.24]) + 0.05 * smooth_noise(rng, h - ground, w, 6)[..., None]
    for xs in range(0, w, max(1, w // 8)):
        img[ground + (h - ground) // 2 : ground + (h - ground) // 2 + 3, xs : xs + w // 16] = 0.9
    if noise:
        img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
