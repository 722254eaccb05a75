"""Haze v2: true depth where it exists (RESIDE-style), a more realistic proxy where it does not.

Depth haze follows RESIDE's indoor training set (ITS): I = J*t + A*(1-t), t = exp(-beta*d),
beta in [0.6, 1.8], A in [0.7, 1.0]. The depth d there is the NYU depth map *normalized by
its own maximum* (d in [0, 1] per image), not metres: with metres (up to ~10 m) beta = 1.8
would leave t = exp(-18) at the back wall, a white-out, whereas SOTS-indoor keeps the far
scene faintly visible (t about 0.15-0.5 at the farthest point = exp(-1.8)..exp(-0.6)).
So the depth is divided by the image's maximum valid depth and beta spans RESIDE's range.

The outdoor proxy (no depth) is v1's, made more like real haze: the sky is pushed to the far
end, beta varies over the image (patchy haze) and the airlight is grey, yellowish or bluish
and a little brighter towards the top.
"""

import numpy as np

from training.synth.common import F32, depth_proxy, lerp, resize_bilinear, smooth, value_noise, veil

# Airlight palettes: neutral grey, yellowish (smog, dust), bluish (mist, overcast morning).
PALETTES = (
    ((1.0, 1.0, 1.0), 0.5),
    ((1.0, 0.95, 0.8), 0.25),
    ((0.88, 0.95, 1.0), 0.25),
)


def coloured_airlight(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Airlight RGB of brightness in [lo, hi], from one of PALETTES, slightly jittered."""
    colours, weights = zip(*PALETTES, strict=True)
    colour = np.array(colours[rng.choice(len(colours), p=weights)])
    colour = colour * rng.uniform(0.97, 1.03, 3)
    return np.clip(rng.uniform(lo, hi) * colour / colour.max(), 0, 1).astype(F32)


def sky_mask(image: np.ndarray) -> np.ndarray:
    """Soft mask of sky: bright, unsaturated, smooth regions, weighted to the top of the frame."""
    h, w, _ = image.shape
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)  # not max(axis=2): slow
    bright_flat = np.clip((lo - 0.55) / 0.3, 0, 1) * np.clip(1 - (hi - lo) / 0.35, 0, 1)
    top = np.clip(1.3 - 1.6 * np.linspace(0, 1, h, dtype=F32), 0, 1)[:, None]
    return smooth(bright_flat * top, 0.02 * max(h, w))


def haze(image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Outdoor haze without depth: patchy beta, coloured airlight, far sky."""
    return proxy_haze(image, rng, severity)[0]


class FlooredHaze:
    """The outdoor proxy haze, whose *target* keeps the haze nothing can see through.

    Where the transmission t falls below `floor`, the scene behind is lost in 8-bit noise, and a clean
    target teaches the network to paint the average hidden scene there: dark smudges in a dense grey
    sky (real `haze/test6.jpg`). The target is then the input dehazed at the floor, as the dark
    channel prior does: J' = A + (J - A) * min(1, t / floor). Inputs are the same draws as `haze`.
    A class so datasets holding it pickle into DataLoader workers.
    """

    def __init__(self, floor: float) -> None:
        if not 0.0 < floor < 1.0:
            raise ValueError(f"a transmission floor must be in (0, 1), got {floor}")
        self.floor = floor

    def __call__(self, image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
        return proxy_haze(image, rng, severity)[0]

    def pair(self, image: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
        """(hazy input, target) for `image` under haze of `severity`."""
        out, transmission, airlight = proxy_haze(image, rng, severity)
        visible = np.minimum(transmission / F32(self.floor), 1).astype(F32)
        kept = np.clip(veil(image, visible, airlight), 0, 1).astype(F32)
        return out, np.where((visible < 1)[..., None], kept, image)  # exactly the photo where seen


def proxy_haze(image: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, ...]:
    """`haze`'s hazy image, with the transmission (H, W) and the airlight (H, 1, 3) it used."""
    h, w, _ = image.shape
    depth = np.maximum(depth_proxy(image, rng), sky_mask(image))
    beta = (0.15 + 2.0 * severity**1.3) * rng.uniform(0.8, 1.25)
    patchiness = rng.uniform(0.0, 0.8)
    beta_map = beta * (1 - patchiness / 2 + patchiness * value_noise(rng, h, w, cell=rng.uniform(0.2, 0.5) * max(h, w)))
    transmission = np.exp(-beta_map * depth).astype(F32)
    airlight = coloured_airlight(rng, 0.7, 1.0)
    gradient = 1 + rng.uniform(0, 0.08) * (0.5 - np.linspace(0, 1, h, dtype=F32))[:, None, None]
    light = (airlight * gradient).astype(F32)
    out = veil(image, transmission, light)
    return np.clip(out, 0, 1).astype(F32), transmission, light


def depth_haze(image: np.ndarray, depth: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """RESIDE ITS haze on a photo with its depth normalized to [0, 1] (1 = the farthest point).

    Severity spans RESIDE's beta range: 0 -> 0.6, 1 -> 1.8.
    """
    beta = lerp(0.6, 1.8, severity)
    transmission = np.exp(-beta * depth).astype(F32)
    level = rng.uniform(0.7, 1.0)
    airlight = np.clip(level * rng.uniform(0.96, 1.04, 3), 0, 1).astype(F32)  # slightly coloured
    return np.clip(veil(image, transmission, airlight), 0, 1).astype(F32)


DEPTH_BORDER = 10  # NYU frames carry a ~10 px invalid border (image pixels); SOTS crops it too
DEPTH_SCALE = 10.0 / 255  # rgbd-indoor depth PNG value -> metres (only the ratio to the max matters)


def photo_with_depth(image: np.ndarray, depth_png: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An rgbd-indoor photo (uint8) and its depth map at any size -> both at the photo's size, the
    invalid border cut off, depth relative to the photo's farthest point (as RESIDE's ITS has it)."""
    h, w = image.shape[:2]
    b = DEPTH_BORDER
    if min(h, w) <= 2 * b + 1:
        raise ValueError(f"depth-data image of {w}x{h} is too small for its {b} px border")
    depth = resize_bilinear(depth_png.astype(np.float32) * DEPTH_SCALE, h, w)[b:-b, b:-b]
    return np.ascontiguousarray(image[b:-b, b:-b]), depth / max(float(depth.max()), 1e-3)
