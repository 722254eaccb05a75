"""Rain streaks: layers of motion-blurred drops at several depths, plus the mist of heavy rain.

Each layer is sparse noise smeared along one direction (a line kernel) on a sheared canvas,
so any angle costs two running sums. Near layers have long, wide, bright, sparse streaks;
far layers short, thin, dim, dense and soft ones, as in real photos and Rain100H.
"""

import numpy as np

from training.synth.common import (
    F32,
    Shear,
    box_blur,
    lerp,
    random_airlight,
    screen,
    splat_gaussians,
    trailing_sum,
    value_noise,
    veil,
)


def _layer(
    rng: np.random.Generator,
    shape: tuple[int, int],
    depth: float,
    scale: float,
    density: float,
    brightness: float,
) -> np.ndarray:
    """One depth layer of streaks on the sheared canvas; depth 0 = far, 1 = near the lens."""
    length = max(2, round(lerp(6, 48, depth) * scale * rng.uniform(0.75, 1.3)))
    width = lerp(0.45, 0.85, depth) * rng.uniform(0.8, 1.25)  # sigma across the streak, px
    count = rng.poisson(lerp(0.006, 0.0009, depth) * density * shape[0] * shape[1])
    peak = lerp(0.25, 0.7, depth) * brightness
    ys = rng.integers(0, shape[0], count).astype(np.float64)
    xs = rng.uniform(0, shape[1], count)  # sub-pixel: antialiased streak sides
    seeds = splat_gaussians(shape, ys, xs, rng.uniform(0.35 * peak, peak, count), 0.3, width)
    streaks = trailing_sum(seeds, length, axis=0)  # the line kernel of the motion blur
    return box_blur(streaks, max(1, length // 8), axis=0)  # tapered ends


def rain(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Streaks from 2-4 depth layers screened onto the image; heavier rain adds a grey veil."""
    h, w, _ = image.shape
    scale = rng.uniform(0.6, 1.4)  # streak size in pixels varies with camera and resolution
    angle = rng.normal(0, 10) if rng.random() < 0.8 else rng.uniform(-30, 30)
    shear = Shear.make(h, w, float(np.clip(angle, -30, 30)), top=round(70 * scale) + 8)
    density = lerp(0.25, 1.2, severity) * rng.uniform(0.6, 1.4)
    brightness = lerp(0.6, 1.2, severity) * rng.uniform(0.8, 1.15)

    n_layers = int(rng.integers(2, 5))
    depths = (np.arange(n_layers) + rng.uniform(0, 1, n_layers)) / n_layers  # far to near
    streaks = np.zeros(shear.canvas_shape, F32)
    for depth in depths:  # streaks rarely overlap: adding, then clipping, is close to screening
        streaks += _layer(rng, shear.canvas_shape, float(depth), scale, density, brightness)
    streaks = np.clip(shear.to_image(streaks), 0, 1)

    mist = lerp(0.0, 0.45, severity) * rng.uniform(0.3, 1.0)
    transmission = 1 - mist * (0.6 + 0.4 * value_noise(rng, h, w, cell=0.5 * max(h, w)))
    out = veil(image, transmission, random_airlight(rng, 0.6, 0.95, tint=0.04))
    tint = rng.uniform(0.88, 1.0, 3).astype(F32)  # streaks pick up a little scene colour
    return np.clip(screen(out, streaks[..., None] * tint), 0, 1).astype(F32)
