"""Numpy helpers shared by the weather generators: blurs, resampling, noise, streak geometry.

Everything is vectorized and O(pixels) whatever the blur size (running sums via cumsum),
so a generator stays cheap enough for a data loader on a couple of CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _along(axis: int, ndim: int, start: int | None, stop: int | None) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[axis] = slice(start, stop)
    return tuple(index)


def box_blur(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a centered window of 2*radius+1 samples along `axis`, edges replicated."""
    if radius < 1:
        return a
    width, n = 2 * radius + 1, a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=F32)
    hi = c[_along(axis, a.ndim, width, width + n)]
    lo = c[_along(axis, a.ndim, 0, n)]
    return (hi - lo) * F32(1.0 / width)


def trailing_sum(a: np.ndarray, length: int, axis: int = 0) -> np.ndarray:
    """Sum of the last `length` samples along `axis` (zeros before the start).

    A lone spike becomes a segment of `length` samples at the spike's full value: the line
    kernel of a motion blur that keeps streak brightness independent of streak length.
    """
    if length <= 1:
        return a
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (length, 0)
    c = np.cumsum(np.pad(a, pad), axis=axis, dtype=F32)
    return c[_along(axis, a.ndim, length, length + n)] - c[_along(axis, a.ndim, 0, n)]


def _three_tap(a: np.ndarray, variance: float, axis: int) -> np.ndarray:
    """[w, 1-2w, w] kernel along `axis`; exact for variance <= 2/3 and cheaper than box passes."""
    wt = F32(variance / 2)
    n = a.shape[axis]
    p = np.pad(a, [(1, 1) if i == axis else (0, 0) for i in range(a.ndim)], mode="edge")
    out = p[_along(axis, a.ndim, 0, n)] + p[_along(axis, a.ndim, 2, n + 2)]
    out *= wt
    out += p[_along(axis, a.ndim, 1, n + 1)] * (1 - 2 * wt)
    return out


def gaussian_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian over the first two axes: 3-tap passes when small, else 3 box passes."""
    if sigma < 0.25:
        return a
    if sigma < 1.5:
        passes = math.ceil(sigma * sigma / 0.6)  # variances of passes add up
        for axis in (0, 1):
            for _ in range(passes):
                a = _three_tap(a, sigma * sigma / passes, axis)
        return a
    radius = max(1, round((math.sqrt(4 * sigma * sigma + 1) - 1) / 2))
    for axis in (0, 1):
        for _ in range(3):
            a = box_blur(a, radius, axis)
    return a


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Downsample the first two axes by averaging factor x factor blocks (edges replicated).

    Sums strided slices: numpy's reductions over small inner axes are far slower.
    """
    if factor <= 1:
        return a
    h, w = a.shape[:2]
    a = np.pad(a, [(0, -h % factor), (0, -w % factor)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    rows = sum(a[i::factor] for i in range(factor))
    return sum(rows[:, j::factor] for j in range(factor)) * F32(1 / factor**2)


def _resize_axis(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    n = a.shape[axis]
    pos = (np.arange(size, dtype=F32) + 0.5) * F32(n / size) - 0.5
    pos = np.clip(pos, 0, n - 1)
    i0 = np.minimum(pos.astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (pos - i0).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
    lo, hi = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
    return lo + (hi - lo) * frac


def resize_bilinear(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of the first two axes (pixel centers aligned, no antialiasing)."""
    return _resize_axis(_resize_axis(a, h, 0), w, 1)


def smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """Large Gaussian blur, computed at reduced resolution: cost does not grow with sigma."""
    factor = max(1, int(sigma // 3))
    if factor == 1:
        return gaussian_blur(a, sigma)
    small = gaussian_blur(block_mean(a, factor), sigma / factor)
    return resize_bilinear(small, a.shape[0], a.shape[1])


def sample_bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at float coordinates (edge clamped) -> (*ys.shape, C)."""
    h, w, c = img.shape
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.minimum(ys.astype(np.int64), max(h - 2, 0))
    x0 = np.minimum(xs.astype(np.int64), max(w - 2, 0))
    dy, dx = min(1, h - 1) * w, min(1, w - 1)  # flat offsets to the next row / column
    flat = img.reshape(-1, c)
    i00 = y0 * w + x0
    fy, fx = (ys - y0)[..., None].astype(F32), (xs - x0)[..., None].astype(F32)
    top = flat[i00] + (flat[i00 + dx] - flat[i00]) * fx
    bottom = flat[i00 + dy] + (flat[i00 + dy + dx] - flat[i00 + dy]) * fx
    return top + (bottom - top) * fy


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random field in [0, 1] with features about `cell` pixels across."""
    gh, gw = math.ceil(h / cell) + 2, math.ceil(w / cell) + 2
    grid = gaussian_blur(rng.random((gh, gw), dtype=F32), 0.6)
    field = resize_bilinear(grid, h, w)
    lo, hi = field.min(), field.max()
    return (field - lo) / F32(max(hi - lo, 1e-6))


def splat_gaussians(
    shape: tuple[int, int],
    ys: np.ndarray,
    xs: np.ndarray,
    peaks: np.ndarray,
    sigma_y: float,
    sigma_x: float,
) -> np.ndarray:
    """Sum of Gaussian blobs centred at sub-pixel (ys, xs): cost grows with blobs, not pixels."""
    h, w = shape

    def profile(centres: np.ndarray, sigma: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        reach = math.ceil(2.5 * sigma)
        idx = np.floor(centres).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)
        weight = np.exp(-0.5 * ((idx - centres[:, None]) / sigma) ** 2)
        weight[(idx < 0) | (idx >= size)] = 0  # clipped to the canvas below
        return np.clip(idx, 0, size - 1), weight

    iy, gy = profile(ys, sigma_y, h)
    ix, gx = profile(xs, sigma_x, w)
    flat = (iy[:, :, None] * w + ix[:, None, :]).ravel()
    weights = (peaks[:, None, None] * gy[:, :, None] * gx[:, None, :]).ravel()
    return np.bincount(flat, weights=weights, minlength=h * w).astype(F32).reshape(shape)


def screen(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Screen blend: light adds like a second exposure and never overshoots 1."""
    return 1 - (1 - base) * (1 - layer)


def veil(img: np.ndarray, transmission: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """Atmospheric scattering I = J*t + A*(1-t); `transmission` is (H, W) or (H, W, 1)."""
    t = transmission if transmission.ndim == 3 else transmission[..., None]
    out = img - airlight  # written as A + (J - A)*t: one allocation, in-place after
    out *= t
    out += airlight
    return out


def random_airlight(rng: np.random.Generator, lo: float, hi: float, tint: float) -> np.ndarray:
    """Grey airlight of brightness in [lo, hi], tinted between bluish and yellowish grey."""
    level = rng.uniform(lo, hi)
    warmth = rng.uniform(-tint, tint)  # < 0 bluish, > 0 yellowish
    rgb = level * (1 + warmth * np.array([1.0, 0.3, -1.2]))
    return np.clip(rgb, 0, 1).astype(F32)


@dataclass(frozen=True)
class Shear:
    """A canvas where lines at `tan` from vertical are columns: directional blur = column sums.

    Output pixel (y, x) reads canvas row y + top at column x + y*tan + offset, with linear
    interpolation across columns, so streaks are antialiased for free.
    """

    h: int
    w: int
    tan: float
    top: int

    @classmethod
    def make(cls, h: int, w: int, angle_deg: float, top: int) -> Shear:
        return cls(h, w, math.tan(math.radians(angle_deg)), top)

    @property
    def canvas_shape(self) -> tuple[int, int]:
        return self.h + self.top, self.w + math.ceil((self.h - 1) * abs(self.tan)) + 2

    def to_image(self, canvas: np.ndarray) -> np.ndarray:
        """Read an (H + top, Wc) canvas back into (H, W) image coordinates."""
        offset = (self.h - 1) * abs(self.tan) if self.tan < 0 else 0.0
        ys = np.arange(self.h)
        xs = np.arange(self.w, dtype=F32)[None, :] + F32(offset) + (ys * self.tan)[:, None]
        x0 = xs.astype(np.int64)
        frac = (xs - x0).astype(F32)
        rows = canvas[self.top :]
        left = np.take_along_axis(rows, x0, axis=1)
        right = np.take_along_axis(rows, x0 + 1, axis=1)
        return left + (right - left) * frac


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


LENS_FACTOR = 4  # the view through the drops is sampled from a 4x smaller, blurred image


def drop_frame(
    dy: np.ndarray, dx: np.ndarray, drops: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets from drop centres -> drop-frame coordinates (u, v) and distance (1 on the edge).

    `drops` values are scalars (one drop, a box of pixels) or arrays aligned with dy and dx.
    """
    cos, sin = drops["cos"], drops["sin"]
    u = (dx * cos + dy * sin) / drops["rx"]
    v = (dy * cos - dx * sin) / drops["ry"]
    rho = np.sqrt(u * u + v * v) + F32(1e-6)
    cu, sv = u / rho, v / rho  # cos and sin of the polar angle
    outline = 1 + drops["gravity"] * sv + drops["lobe2"] * (cu * cu - sv * sv)
    outline += drops["lobe3"] * cu * (4 * cu * cu - 3)
    return u, v, rho / outline


def flake_layer(
    rng: np.random.Generator,
    shape: tuple[int, int],
    size: float,
    scale: float,
    density: float,
    motion: bool,
) -> np.ndarray:
    """Optical depth of one flake layer on the sheared canvas; size 0 = fine, 1 = big flakes."""
    sigma = lerp(0.55, 3.5, size**2) * scale * rng.uniform(0.8, 1.2)
    flakes_per_px = lerp(0.02, 0.0001, size**0.5) * density
    count = rng.poisson(flakes_per_px * shape[0] * shape[1])
    opacity = lerp(0.95, 0.3, size) * rng.uniform(0.75, 1.0)
    hardness = rng.uniform(1.0, 2.0)  # > 1 flattens the top, the edge stays soft
    peaks = -np.log1p(-opacity * rng.uniform(0.3, 1.0, count)) * hardness
    sigma_y = sigma
    if motion:  # a flake moving during the exposure: longer, fainter
        length = lerp(2, 8, size) * scale * rng.uniform(0.6, 1.4)
        sigma_y = float(np.hypot(sigma, length / 3.5))
        peaks *= np.sqrt(sigma / sigma_y)
    ys = rng.uniform(0, shape[0], count)
    xs = rng.uniform(0, shape[1], count)
    return splat_gaussians(shape, ys, xs, peaks, sigma_y, sigma)
