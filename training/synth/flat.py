"""Flat regions painted into clean photos: overcast skies, blank walls, smooth haze-free greys.

Issue 30's probe (`python -m bench.flat_probe`, and the zero-prompt check in recipe item 33):
the pretrained backbone, with no prompt at all, darkens a flat mid-grey sky by 60-70 grey levels.
A flat grey area is exactly what synthetic haze produces (I = J t + A (1 - t), A in 0.7-1.0), and
the clean photos behind stage 1 are almost never flat (median flat share 1 %), so the network
learned "flat and grey = veiled dark surface". Painting such regions into the *clean* photo,
before any weather is added, shows it flat greys that are scene content: under haze they are
veiled like any other surface, and with no weather (or rain, drops, snow) they must stay as
they are.
"""

import numpy as np

from training.synth.common import F32, value_noise

SKY_TINTS = (  # RGB factors: neutral overcast, pale blue sky, warm evening, cool dusk
    (1.0, 1.0, 1.0),
    (0.86, 0.93, 1.0),
    (1.0, 0.95, 0.86),
    (0.92, 0.94, 1.0),
)


def flat_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32: a smooth field of one random level and tint, as a sky or wall is.

    Level 0.15-0.95 (the probe's dark greys included), a faint low-frequency wash (clouds, uneven
    light), a gentle vertical gradient and sensor noise of 0.5-2.5 grey levels.
    """
    level = rng.uniform(0.15, 0.95)
    tint = np.asarray(SKY_TINTS[int(rng.integers(len(SKY_TINTS)))], dtype=F32) * rng.uniform(0.97, 1.03, 3)
    wash = rng.uniform(0.0, 0.08) * (value_noise(rng, h, w, cell=rng.uniform(0.4, 1.2) * max(h, w)) - 0.5)
    gradient = rng.uniform(-0.12, 0.12) * (np.linspace(-0.5, 0.5, h, dtype=F32))[:, None]
    luma = level + wash + gradient
    noise = rng.normal(0, rng.uniform(0.5, 2.5) / 255, (h, w, 3))
    return np.clip(luma[..., None] * tint / tint.max() + noise, 0, 1).astype(F32)


def paint_flat_region(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (float32 HxWx3 in [0, 1]) with a flat region painted in.

    60 %: a sky, the top 30-100 % of the rows above a wavy horizon; 40 %: a rectangle (a wall, a
    window, a cloud bank) covering 30-100 % of each side. The edge is feathered over a few pixels
    so no seam teaches an edge detector.
    """
    h, w, _ = image.shape
    rows = np.arange(h, dtype=F32)[:, None]
    if rng.random() < 0.6:
        waves = value_noise(rng, 1, w, cell=w * rng.uniform(0.2, 0.6))[0] - 0.5
        horizon = h * rng.uniform(0.3, 1.0) + h * 0.08 * waves
        mask = np.clip((horizon[None, :] - rows) / rng.uniform(1.0, 4.0), 0, 1)
    else:
        rh, rw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
        top, left = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        cols = np.arange(w, dtype=F32)[None, :]
        feather = rng.uniform(1.0, 4.0)
        inside_y = np.minimum(rows - top + 1, top + rh - rows) / feather
        inside_x = np.minimum(cols - left + 1, left + rw - cols) / feather
        mask = np.clip(np.minimum(inside_y, inside_x), 0, 1)
    mask = mask.astype(F32)[..., None]
    return (image * (1 - mask) + flat_field(rng, h, w) * mask).astype(F32)
