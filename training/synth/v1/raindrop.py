"""Raindrops on the lens or window: each drop is a small fisheye lens showing a flipped,
wider, blurred view of the scene around it.

Drops are irregular ellipses (low-order angular harmonics, bottom-heavy from gravity) of
log-spread sizes. A per-image focus setting moves between in-focus drops (crisp edge, dark
rim, specular highlight) and out-of-focus ones (soft bright blobs, as in DeRaindrop photos).
The rest of the image is slightly blurred, since a wet pane also scatters light.
"""

import math

import numpy as np

from training.synth.common import F32, LENS_FACTOR, block_mean, drop_frame, gaussian_blur, lerp, sample_bilinear


def _random_drops(
    rng: np.random.Generator, h: int, w: int, count: int, r_max: float, focus: float
) -> dict[str, np.ndarray]:
    """Shape, place and lens parameters of `count` drops, as arrays."""
    radii = 2 * (r_max / 2) ** (rng.random(count) ** 1.2)  # mostly small, a few big
    rot = rng.uniform(-0.5, 0.5, count)
    return {
        "cy": rng.uniform(-radii, h + radii),
        "cx": rng.uniform(-radii, w + radii),
        "ry": radii * rng.uniform(0.75, 1.15, count),
        "rx": radii * rng.uniform(0.8, 1.2, count),
        "cos": np.cos(rot),
        "sin": np.sin(rot),
        "gravity": rng.uniform(0, 0.18, count),  # bottom-heavy
        "lobe2": rng.uniform(-0.08, 0.08, count),
        "lobe3": rng.uniform(-0.08, 0.08, count),
        "softness": lerp(0.1, 0.7, focus) * rng.uniform(0.7, 1.3, count),
        "zoom": -rng.uniform(2.0, 5.0, count),  # negative: the view is upside down
    }


def _coverage(drops: dict[str, np.ndarray], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Opacity of the topmost drop at each pixel and which drop it is (-1: none).

    Loops over drops (tens to hundreds), each touching only its bounding box.
    """
    alpha = np.zeros((h, w), F32)
    owner = np.full((h, w), -1, np.int32)
    for k, params in enumerate(zip(*(drops[key].tolist() for key in drops), strict=True)):
        drop = dict(zip(drops, params, strict=True))
        cy, cx = drop["cy"], drop["cx"]
        reach = 1.35 * max(drop["rx"], drop["ry"]) + 1
        y0, y1 = max(0, math.floor(cy - reach)), min(h, math.ceil(cy + reach) + 1)
        x0, x1 = max(0, math.floor(cx - reach)), min(w, math.ceil(cx + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=F32)[:, None] - F32(cy)
        dx = np.arange(x0, x1, dtype=F32)[None, :] - F32(cx)
        _, _, dist = drop_frame(dy, dx, drop)
        a = np.clip((1 - dist) / drop["softness"], 0, 1)
        a = a * a * (3 - 2 * a)
        box = (slice(y0, y1), slice(x0, x1))
        on_top = a > alpha[box]
        alpha[box] = np.where(on_top, a, alpha[box])
        owner[box] = np.where(on_top, k, owner[box])
    return alpha, owner


def raindrop(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Drops of 2 px up to ~30 px radius; severity raises their number, size and the blur."""
    h, w, _ = image.shape
    focus = rng.uniform(0, 1) ** 0.6  # 0 = drops in focus, 1 = camera focused on the scene
    base = gaussian_blur(image, lerp(0.3, 1.0, severity) * rng.uniform(0.6, 1.3))
    lens_view = gaussian_blur(block_mean(image, LENS_FACTOR), rng.uniform(0.7, 2.0))

    count = rng.poisson(lerp(30, 120, severity) * h * w / 256**2)
    r_max = lerp(10, 24, severity) * rng.uniform(0.7, 1.3)
    drops = _random_drops(rng, h, w, count, r_max, focus)
    alpha, owner = _coverage(drops, h, w)

    ys, xs = np.nonzero(owner >= 0)
    ids = owner[ys, xs]
    pixel_drops = {key: values[ids].astype(F32) for key, values in drops.items()}
    dy, dx = ys - pixel_drops["cy"], xs - pixel_drops["cx"]
    u, v, dist = drop_frame(dy, dx, pixel_drops)
    rim = np.exp(-(((dist - 0.85) / 0.12) ** 2)) * lerp(0.18, 0.0, focus)
    highlight = np.exp(-((u + 0.3) ** 2 + (v + 0.35) ** 2) / 0.02) * lerp(0.4, 0.05, focus)

    to_lens = F32(1 / LENS_FACTOR)  # pixel centres of the lens view
    src_y = (pixel_drops["cy"] + pixel_drops["zoom"] * dy + 0.5) * to_lens - 0.5
    src_x = (pixel_drops["cx"] + pixel_drops["zoom"] * dx + 0.5) * to_lens - 0.5
    view = sample_bilinear(lens_view, src_y, src_x)
    view = view * F32(rng.uniform(0.8, 1.0)) + F32(rng.uniform(0.04, 0.14))  # drops catch light
    a = alpha[ys, xs][:, None]
    out = base.copy()
    out[ys, xs] = base[ys, xs] * (1 - a) + (view + (highlight - rim)[:, None]) * a
    return np.clip(out, 0, 1).astype(F32)
