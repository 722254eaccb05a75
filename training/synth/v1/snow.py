"""Falling snow: flake layers from small and dense to large, sparse and out of focus.

Flakes are soft Gaussian blobs, some stretched along the fall direction by the exposure.
Their optical depths add up and opacity is 1 - exp(-depth), so big or overlapping flakes
get a flat, soft-edged top and thin ones stay semi-transparent; a whitish veil lowers
contrast the way snowfall does.
"""

import numpy as np

from training.synth.common import (
    F32,
    Shear,
    flake_layer,
    lerp,
    random_airlight,
    value_noise,
    veil,
)


def snow(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Three to five flake layers over a whitish veil; severity raises flake density and veil."""
    h, w, _ = image.shape
    scale = rng.uniform(0.7, 1.4)
    angle = float(np.clip(rng.normal(0, 15), -35, 35))
    shear = Shear.make(h, w, angle, top=round(20 * scale))
    density = lerp(0.2, 1.0, severity) * rng.uniform(0.6, 1.4)
    motion_share = rng.uniform(0, 1)

    n_layers = int(rng.integers(3, 6))
    sizes = (np.arange(n_layers) + rng.uniform(0, 1, n_layers)) / n_layers  # fine to big
    sizes[0] *= 0.5  # always some fine, dense snow
    depth = np.zeros(shear.canvas_shape, F32)
    for size in sizes:
        motion = bool(rng.random() < motion_share)
        depth += flake_layer(rng, shear.canvas_shape, float(size), scale, density, motion)
    # float64: numpy's float32 expm1 kernels differ by an ulp between AVX2 and AVX-512 CPUs
    alpha = (-np.expm1(-shear.to_image(depth).astype(np.float64))).astype(F32)[..., None]

    mist = lerp(0.05, 0.4, severity) * rng.uniform(0.4, 1.0)
    transmission = 1 - mist * (0.6 + 0.4 * value_noise(rng, h, w, cell=0.5 * max(h, w)))
    out = veil(image, transmission, random_airlight(rng, 0.75, 1.0, tint=0.05))
    flake = rng.uniform(0.88, 1.0) * np.array([0.97, 0.99, 1.0], F32)  # faintly cold white
    return np.clip(out * (1 - alpha) + flake * alpha, 0, 1).astype(F32)
