"""Haze by the atmospheric scattering model I = J*t + A*(1-t), t = exp(-beta*depth).

There is no depth map for a random photo, so depth is a smooth, scene-dependent proxy:
a vertical gradient (the far scene is usually higher up), a heavily blurred brightness cue
(bright low-saturation regions such as sky tend to be far, as the dark channel prior
observes) and smooth random noise, so transmission varies like it does in real haze.
"""

import numpy as np

from training.synth.common import F32, random_airlight, smooth, value_noise, veil


def depth_proxy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far), smooth and loosely following the scene."""
    h, w, _ = image.shape
    size = max(h, w)
    horizon = rng.uniform(-0.2, 0.6)  # fraction of the height where depth stops growing
    ys = np.linspace(0, 1, h, dtype=F32)[:, None]
    vertical = np.clip((1 - ys - horizon) / max(1 - horizon, 0.2), 0, 1)
    dark_channel = smooth(np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2]), 0.06 * size)
    noise = value_noise(rng, h, w, cell=rng.uniform(0.25, 0.6) * size)
    weights = rng.dirichlet([2.0, 2.0, 1.2])
    depth = weights[0] * vertical + weights[1] * dark_channel + weights[2] * noise
    lo, hi = float(depth.min()), float(depth.max())
    depth = (depth - lo) / max(hi - lo, 1e-3)
    near = rng.uniform(0.15, 0.4)  # even the nearest object sits behind some haze
    return (near + (1 - near) * depth).astype(F32)


def haze(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Uniform-to-patchy haze; severity raises the scattering coefficient beta."""
    depth = depth_proxy(image, rng)
    beta = (0.15 + 2.0 * severity**1.3) * rng.uniform(0.8, 1.25)
    # float64: numpy's float32 exp kernels differ by an ulp between CPU instruction sets
    transmission = np.exp(-beta * depth.astype(np.float64)).astype(F32)
    airlight = random_airlight(rng, 0.7, 1.0, tint=0.08)
    return np.clip(veil(image, transmission, airlight), 0, 1).astype(F32)
