"""Haze by the atmospheric scattering model I = J*t + A*(1-t), t = exp(-beta*depth).

There is no depth map for a random photo, so depth is a smooth, scene-dependent proxy:
a vertical gradient (the far scene is usually higher up), a heavily blurred brightness cue
(bright low-saturation regions such as sky tend to be far, as the dark channel prior
observes) and smooth random noise, so transmission varies like it does in real haze.
"""

import numpy as np

from training.synth.common import F32, depth_proxy, random_airlight, veil


def haze(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Uniform-to-patchy haze; severity raises the scattering coefficient beta."""
    depth = depth_proxy(image, rng)
    beta = (0.15 + 2.0 * severity**1.3) * rng.uniform(0.8, 1.25)
    # float64: numpy's float32 exp kernels differ by an ulp between CPU instruction sets
    transmission = np.exp(-beta * depth.astype(np.float64)).astype(F32)
    airlight = random_airlight(rng, 0.7, 1.0, tint=0.08)
    return np.clip(veil(image, transmission, airlight), 0, 1).astype(F32)
