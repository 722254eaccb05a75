"""Snow v2, as in real snow photos: many flake layers from tiny to large, some motion-blurred,
a few big defocused flakes near the lens (soft, flat discs), and a veil in heavy snow.
"""

import numpy as np

from training.synth.common import F32, Shear, flake_layer, lerp, random_airlight, splat_gaussians, value_noise, veil


def near_lens(rng: np.random.Generator, h: int, w: int, severity: float, scale: float) -> np.ndarray:
    """Opacity of out-of-focus flakes close to the lens: few, large, faint, flat-topped."""
    alpha = np.zeros((h, w), F32)
    for radius in (rng.uniform(4, 8), rng.uniform(8, 16)):
        count = rng.poisson(lerp(1, 8, severity) * rng.uniform(0.3, 1.5) * h * w / 256**2)
        sigma = radius * scale / 2
        ys, xs = rng.uniform(0, h, count), rng.uniform(0, w, count)
        bumps = splat_gaussians((h, w), ys, xs, rng.uniform(2.0, 5.0, count), sigma, sigma)
        alpha += -np.expm1(-bumps) * F32(rng.uniform(0.25, 0.6))  # flat top, soft edge
    return np.clip(alpha, 0, 1)


def snow(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Four to seven flake layers, near-lens flakes and a whitish veil; severity raises all."""
    h, w, _ = image.shape
    scale = rng.uniform(0.6, 1.5)
    angle = float(np.clip(rng.normal(0, 15), -40, 40))
    shear = Shear.make(h, w, angle, top=round(24 * scale))
    density = lerp(0.3, 1.4, severity) * rng.uniform(0.6, 1.4)
    motion_share = rng.uniform(0, 0.8)

    n_layers = int(rng.integers(4, 8))
    sizes = (np.arange(n_layers) + rng.uniform(0, 1, n_layers)) / n_layers
    sizes[:2] *= 0.4  # always tiny, dense snow
    depth = np.zeros(shear.canvas_shape, F32)
    for size in sizes:
        motion = bool(rng.random() < motion_share)
        depth += flake_layer(rng, shear.canvas_shape, float(size), scale, density, motion)
    alpha = -np.expm1(-shear.to_image(depth))
    alpha = np.maximum(alpha, near_lens(rng, h, w, severity, scale))[..., None]

    mist = lerp(0.05, 0.55, severity**1.2) * rng.uniform(0.4, 1.0)
    transmission = 1 - mist * (0.6 + 0.4 * value_noise(rng, h, w, cell=0.5 * max(h, w)))
    out = veil(image, transmission, random_airlight(rng, 0.7, 1.0, tint=0.06))
    flake = rng.uniform(0.85, 1.0) * np.array([0.97, 0.99, 1.0], F32)
    return np.clip(out * (1 - alpha) + flake * alpha, 0, 1).astype(F32)
