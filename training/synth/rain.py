"""Rain v2: rendered streak layers composited with procedural ones, heavy rain, veil and fog.

Real streaks (Garg & Nayar's rendered layers: oscillation, defocus, varying width) are
cropped, scaled, rotated and flipped in one affine resample, 1-3 of them, brightened and
screened or added onto the photo, then slightly blurred. Procedural v1-style layers fill in
the far, fine rain. Heavy rain (Rain100H) means wide, bright, dense streaks, sometimes in two
directions; every rain carries the accumulation veil of distant rain, and some rain fog.
A downpour (real photos of heavy rain at the size a viewer sees them) is the other extreme:
many fine, faint streaks under a strong veil, where a classifier that has only seen bright,
coarse streaks calls the photo haze.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from training.synth.assets import StreakBank
from training.synth.common import (
    F32,
    Shear,
    box_blur,
    gaussian_blur,
    lerp,
    random_airlight,
    screen,
    splat_gaussians,
    trailing_sum,
    value_noise,
    veil,
)
from training.synth.haze import haze as hazy

MAX_MEAN_STREAK = 0.22
DOWNPOUR_PROB = 0.3


def rendered_layer(
    layer: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, angle: float, scale: float
) -> np.ndarray:
    """A random crop of `layer` at `scale` (>1 = wider, longer streaks), rotated by `angle`.

    The source window wraps around the layer's edges (streak layers are sparse, seams do not
    show), and one affine bilinear resample (Pillow, C) does scale, rotation and flip.
    """
    h, w = shape
    theta = math.radians(angle)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    flip = -1.0 if rng.random() < 0.5 else 1.0
    half_h = (abs(cos) * h + abs(sin) * w) / 2 + 2  # half extent of the source window
    half_w = (abs(sin) * h + abs(cos) * w) / 2 + 2
    cy, cx = rng.uniform(0, layer.shape[0]), rng.uniform(0, layer.shape[1])
    rows = np.arange(math.floor(cy - half_h), math.ceil(cy + half_h) + 1) % layer.shape[0]
    cols = np.arange(math.floor(cx - half_w), math.ceil(cx + half_w) + 1) % layer.shape[1]
    window = Image.fromarray(np.ascontiguousarray(layer[rows][:, cols]))
    oy, ox = cy - math.floor(cy - half_h), cx - math.floor(cx - half_w)  # centre in the window
    # Output (x, y) relative to the centre -> window (x', y'): a rotation, scaled, maybe mirrored.
    a, b = cos * flip, -sin
    d, e = sin * flip, cos
    coeffs = (a, b, ox - a * w / 2 - b * h / 2, d, e, oy - d * w / 2 - e * h / 2)
    out = window.transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=F32) * F32(1 / 255)


def procedural_layer(
    rng: np.random.Generator, shape: tuple[int, int], depth: float, density: float, width: float, stretch: float = 1.0
) -> np.ndarray:
    """v1's line-kernel streaks on a sheared canvas, with a width factor for heavy rain and a
    length factor (`stretch`) for a downpour's long exposure-blurred streaks."""
    length = max(2, round(lerp(6, 48, depth) * rng.uniform(0.75, 1.3) * max(1.0, width) * stretch))
    sigma = lerp(0.45, 0.85, depth) * rng.uniform(0.8, 1.25) * width
    count = rng.poisson(lerp(0.006, 0.0009, depth) * density * shape[0] * shape[1])
    peak = lerp(0.25, 0.7, depth)
    ys = rng.integers(0, shape[0], count).astype(np.float64)
    xs = rng.uniform(0, shape[1], count)
    seeds = splat_gaussians(shape, ys, xs, rng.uniform(0.35 * peak, peak, count), 0.3, sigma)
    streaks = trailing_sum(seeds, length, axis=0)
    return box_blur(streaks, max(1, length // 8), axis=0)


class StreakRain:
    """The v2 rain generator `(image, rng, severity) -> image`; `bank=None` = procedural only.

    A class (not a closure) so datasets holding it pickle into DataLoader workers.
    """

    def __init__(self, bank: StreakBank | None) -> None:
        self.bank = bank

    def streaks(
        self, shape: tuple[int, int], rng: np.random.Generator, severity: float, downpour: bool = False
    ) -> np.ndarray:
        """(H, W) streak radiance in [0, 1] for the whole frame; a downpour's are fine and faint."""
        h, w = shape
        heavy = not downpour and rng.random() < lerp(0.1, 0.7, severity)  # Rain100H-like: wide, bright, dense
        angle = float(np.clip(rng.normal(0, 10) if rng.random() < 0.8 else rng.uniform(-30, 30), -30, 30))
        angles = [angle]
        if rng.random() < lerp(0.05, 0.35, severity):  # wind gusts: a second direction
            angles.append(angle + rng.choice([-1, 1]) * rng.uniform(10, 30))
        out = np.zeros(shape, F32)
        if self.bank is not None:
            for i in range(int(rng.integers(3, 6) if downpour else rng.integers(1, 3 if heavy else 4))):
                layer = self.bank.layers[int(rng.integers(len(self.bank.layers)))]
                if downpour:
                    scale, gain = rng.uniform(0.35, 0.7), lerp(0.3, 0.7, severity) * rng.uniform(0.7, 1.2)
                elif heavy:
                    scale, gain = rng.uniform(1.3, 2.3), rng.uniform(0.8, 1.6)
                else:
                    scale, gain = rng.uniform(0.7, 1.5), lerp(0.7, 1.5, severity) * rng.uniform(0.7, 1.2)
                tilt = angles[i % len(angles)] + rng.normal(0, 3)
                out += rendered_layer(layer, shape, rng, tilt, scale) * F32(gain)
        n_procedural = int(rng.integers(1, 3)) if self.bank is not None else int(rng.integers(2, 5))
        density = lerp(0.2, 1.0, severity) * rng.uniform(0.6, 1.3) * (1.3 if heavy else 1.6 if downpour else 1.0)
        width = rng.uniform(1.3, 2.0) if heavy else rng.uniform(0.6, 0.85) if downpour else rng.uniform(0.8, 1.2)
        # Real downpours streak long: 40-150 px on photos of 500-1300 px (real/rain), where v1's
        # streaks stop at ~60.
        stretch = rng.uniform(1.5, 3.0) if downpour else 1.0
        # Canvas rows above the frame, so streaks enter from the top: the longest is 62·max(1, width)·stretch.
        # Other rain keeps its old margin (70·width), so its data stays bit-identical to before.
        reach = round(70 * (max(1.0, width) * stretch if downpour else width)) + 8
        tilts = angles if self.bank is None else angles[:1]  # rendered layers carry the second direction
        for tilt in tilts:
            shear = Shear.make(h, w, float(np.clip(tilt, -40, 40)), top=reach)
            canvas = np.zeros(shear.canvas_shape, F32)
            for depth in (np.arange(n_procedural) + rng.uniform(0, 1, n_procedural)) / n_procedural:
                canvas += procedural_layer(rng, shear.canvas_shape, float(depth), density / len(tilts), width, stretch)
            gain = lerp(0.5, 0.9, severity) * rng.uniform(0.8, 1.15) * (0.6 if downpour else 1.0)
            out += shear.to_image(canvas) * F32(gain)
        # Soft saturation, not a clip: overlapping streaks approach opacity 0.9; and the mean streak
        # radiance is capped (Rain100H's heaviest sit near 0.2), so dense rain never whites out.
        out = 0.9 * -np.expm1(-1.5 * gaussian_blur(out, rng.uniform(0.25, 0.9)))
        return out * F32(min(1.0, MAX_MEAN_STREAK / max(float(out.mean()), 1e-6)))

    def __call__(self, image: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
        h, w, _ = image.shape
        downpour = rng.random() < DOWNPOUR_PROB
        streaks = self.streaks((h, w), rng, severity, downpour)
        out = image
        if rng.random() < lerp(0.1, 0.45, severity):  # rain and fog together
            out = hazy(out, rng, rng.uniform(0.05, 0.35))
        mist = lerp(0.05, 0.5, severity) * rng.uniform(0.3, 1.0)  # the veil of distant rain
        if downpour:
            mist = max(mist, lerp(0.2, 0.55, severity) * rng.uniform(0.7, 1.0))
        transmission = 1 - mist * (0.6 + 0.4 * value_noise(rng, h, w, cell=0.5 * max(h, w)))
        out = veil(out, transmission, random_airlight(rng, 0.6, 0.95, tint=0.04))
        layer = streaks[..., None] * rng.uniform(0.88, 1.0, 3).astype(F32)
        out = screen(out, layer) if rng.random() < 0.6 else out + layer
        return np.clip(out, 0, 1).astype(F32)


def add_rain_layer(clean: np.ndarray, rain_layer: np.ndarray, strength: float) -> np.ndarray:
    """A rain layer lifted off an additive pair (HxW) put back on a clean photo (HxWx3, float), as
    those pairs were made: clip(clean + strength * S)."""
    return np.clip(clean + strength * rain_layer[..., None], 0, 1)
