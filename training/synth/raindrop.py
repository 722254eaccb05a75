"""Raindrops v2, as in DeRaindrop photos: mostly out-of-focus drops on the glass, each a
small lens showing a blurred, flipped view of the scene, the glass around them smeared.

Shapes range from round to smeared (stretched, bottom-heavy drops running down the pane).
All drops are rendered at once (one flat array of (drop, pixel) pairs), so the cost grows
with the covered area, not with a Python loop over drops.
"""

import numpy as np

from training.synth.common import (
    F32,
    LENS_FACTOR,
    block_mean,
    drop_frame,
    gaussian_blur,
    lerp,
    resize_bilinear,
    sample_bilinear,
    smooth,
)


def random_drops(rng: np.random.Generator, h: int, w: int, count: int, r_max: float) -> dict[str, np.ndarray]:
    """Shape, place and lens parameters of `count` drops; a share of them smeared."""
    radii = 2 * (r_max / 2) ** (rng.random(count) ** 1.3)  # mostly small, a few big
    smear = np.where(rng.random(count) < 0.3, rng.uniform(1.4, 3.0, count), 1.0)
    rot = rng.uniform(-0.4, 0.4, count)
    return {
        "cy": rng.uniform(-radii, h + radii),
        "cx": rng.uniform(-radii, w + radii),
        "ry": radii * rng.uniform(0.8, 1.15, count) * smear,
        "rx": radii * rng.uniform(0.8, 1.2, count),
        "cos": np.cos(rot),
        "sin": np.sin(rot),
        "gravity": rng.uniform(0, 0.2, count) + 0.1 * (smear > 1),
        "lobe2": rng.uniform(-0.1, 0.1, count),
        "lobe3": rng.uniform(-0.1, 0.1, count),
        "zoom": -rng.uniform(2.0, 5.0, count),  # negative: the view is upside down
    }


def coverage(drops: dict[str, np.ndarray], h: int, w: int, softness: float) -> tuple[np.ndarray, np.ndarray]:
    """Opacity of the most opaque drop at each pixel and which drop it is (-1: none)."""
    cos, sin = np.abs(drops["cos"]), np.abs(drops["sin"])
    reach_y = 1.35 * (drops["ry"] * cos + drops["rx"] * sin) + 1  # the rotated ellipse's box
    reach_x = 1.35 * (drops["rx"] * cos + drops["ry"] * sin) + 1
    y0 = np.clip(np.floor(drops["cy"] - reach_y), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil(drops["cy"] + reach_y) + 1, 0, h).astype(np.int64)
    x0 = np.clip(np.floor(drops["cx"] - reach_x), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil(drops["cx"] + reach_x) + 1, 0, w).astype(np.int64)
    bh, bw = np.maximum(y1 - y0, 0), np.maximum(x1 - x0, 0)
    sizes = bh * bw
    ids = np.repeat(np.arange(len(sizes)), sizes)  # one entry per (drop, pixel of its box)
    local = np.arange(len(ids)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ys = y0[ids] + local // np.maximum(bw[ids], 1)
    xs = x0[ids] + local % np.maximum(bw[ids], 1)
    shape_keys = ("cy", "cx", "ry", "rx", "cos", "sin", "gravity", "lobe2", "lobe3")
    pair = {key: drops[key].astype(F32)[ids] for key in shape_keys}
    _, _, dist = drop_frame((ys - pair["cy"]).astype(F32), (xs - pair["cx"]).astype(F32), pair)
    a = np.clip((1 - dist) / F32(softness), 0, 1)
    a = a * a * (3 - 2 * a)
    flat = ys * w + xs
    alpha = np.zeros(h * w, F32)
    np.maximum.at(alpha, flat, a)
    owner = np.full(h * w, -1, np.int64)
    top = (a >= alpha[flat]) & (a > 0)
    owner[flat[top]] = ids[top]  # ties: any of the equally opaque drops
    return alpha.reshape(h, w), owner.reshape(h, w)


def drop_layer(lens_view: np.ndarray, drops: dict[str, np.ndarray], h: int, w: int, softness: float) -> np.ndarray:
    """(h, w, 4) drops: the flipped lens view premultiplied by opacity, then opacity.

    `drops` are in this layer's pixels; `lens_view` is the whole scene at any smaller size.
    """
    alpha, owner = coverage(drops, h, w, softness)
    ys, xs = np.nonzero(owner >= 0)
    ids = owner[ys, xs]
    pixel = {key: drops[key].astype(F32)[ids] for key in ("cy", "cx", "zoom")}
    to_lens = F32(lens_view.shape[0] / h)  # layer pixels -> lens-view pixels
    src_y = (pixel["cy"] + pixel["zoom"] * (ys - pixel["cy"]) + 0.5) * to_lens - 0.5
    src_x = (pixel["cx"] + pixel["zoom"] * (xs - pixel["cx"]) + 0.5) * to_lens - 0.5
    layer = np.zeros((h, w, 4), F32)
    layer[ys, xs, :3] = sample_bilinear(lens_view, src_y, src_x) * alpha[ys, xs][:, None]
    layer[..., 3] = alpha
    return layer


def raindrop(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Drops of 2 px up to ~25 px radius; severity raises their number and size."""
    h, w, _ = image.shape
    defocus = rng.uniform(0.4, 1.0) ** 0.7  # 1 = camera focused far beyond the glass
    count = rng.poisson(lerp(30, 140, severity) * rng.uniform(0.6, 1.4) * h * w / 256**2)
    r_max = lerp(8, 22, severity) * rng.uniform(0.7, 1.3)
    drops = random_drops(rng, h, w, count, r_max)
    lens_view = gaussian_blur(block_mean(image, LENS_FACTOR), rng.uniform(0.8, 2.2))
    lens_view = lens_view * F32(rng.uniform(0.75, 0.95)) + F32(rng.uniform(0.06, 0.2))  # drops catch light

    sigma = lerp(0.4, 2.5, defocus)  # out of focus: the whole drop layer blurs
    softness = lerp(0.15, 0.6, defocus)
    if sigma < 1.2 or min(h, w) < 8:
        layer = gaussian_blur(drop_layer(lens_view, drops, h, w, softness), sigma)
    else:  # blurred anyway: drawn and blurred at half resolution, a quarter of the cost
        half = {key: values / 2 if key in ("rx", "ry") else values for key, values in drops.items()}
        half["cy"], half["cx"] = (drops["cy"] + 0.5) / 2 - 0.5, (drops["cx"] + 0.5) / 2 - 0.5
        small = drop_layer(lens_view, half, (h + 1) // 2, (w + 1) // 2, softness)
        layer = resize_bilinear(gaussian_blur(small, sigma / 2), h, w)
    drop_rgb, alpha = layer[..., :3], layer[..., 3]

    halo = np.clip(smooth(alpha, 0.3 * r_max + 2) * rng.uniform(0.5, 1.3), 0, 1)[..., None]
    smeared = resize_bilinear(gaussian_blur(block_mean(image, 2), rng.uniform(1.0, 2.0)), h, w)
    base = gaussian_blur(image, lerp(0.2, 0.7, severity) * rng.uniform(0.6, 1.3))
    base = base + (smeared - base) * halo  # the wet glass around drops smears the scene
    out = base * (1 - alpha[..., None]) + drop_rgb
    return np.clip(out, 0, 1).astype(F32)
