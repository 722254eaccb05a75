"""The flat-region guard: where the photo is flat, the restoration may only be a local contrast
stretch of it (a local affine function of the photo, channel by channel), never new structure.

Why: the network paints dark or brown blotches into smooth skies and dense haze (issue 30), where
the photo holds nothing to restore. The haze model itself is locally affine, J = (I - A) / t + A
with t smooth, so dehazing a flat region is a local stretch and loses nothing under the guard;
rain and snow leave a region non-flat (their streaks and flakes are structure), so their
restorations pass through untouched. It is He et al.'s guided filter with the photo as the guide,
fitted at a working resolution (its coefficients are smooth, so they are upsampled: the "fast"
guided filter) and blended in by a mask of the photo's flatness. The service applies it to the
whole blended photo and evaluation applies it too, so the reported numbers are what users get.
Its reach is its window: structure up to ~1/16 of the longer side goes; a blotch much larger than
that is softened, its smooth core kept.
"""

from dataclasses import dataclass

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
BAND_ROWS = 256  # full-resolution rows per step: memory stays bounded on a 40-MP photo
Y_LEVELS = 219.0  # luma span in grey levels (BT.601 16..235), the unit of the blotch measure


@dataclass(frozen=True)
class FlatGuard:
    working_side: int = 512  # coefficients and mask are fitted with the longer side near this
    radius: int = 16  # box radius at the working resolution (a 33-px window, the blotch measure's largest)
    flat_std: float = 4.0  # grey levels: at or below this local std of the photo's luma, fully guarded
    textured_std: float = 14.0  # at or above this, the restoration is kept as it is
    eps_levels: float = 2.0  # the guided filter's regulariser, as a std in grey levels
    # The stretch's coefficients are fitted on blocks this many times larger, with the radius as
    # many times smaller (the same reach): they are smooth, and it quarters most of the guard's
    # work. The mask keeps the working resolution, so thin streaks still count as texture.
    coefficient_step: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.flat_std < self.textured_std:
            raise ValueError(f"need 0 <= flat_std < textured_std, got {self.flat_std} and {self.textured_std}")
        if self.working_side < 2 * self.radius + 1 or self.radius < 1:
            raise ValueError(f"working_side {self.working_side} must hold a window of radius {self.radius} >= 1")
        if self.coefficient_step < 1 or self.radius < self.coefficient_step:
            raise ValueError(f"coefficient_step {self.coefficient_step} must be in 1..radius ({self.radius})")

    def factor(self, height: int, width: int) -> int:
        """Block size that brings the longer side down to about `working_side` (1: no downscaling)."""
        return max(1, round(max(height, width) / self.working_side))

    def apply(self, photo: np.ndarray, restored: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 0..1 photo and its restoration -> the guarded restoration (float32 0..1)."""
        if photo.shape != restored.shape or photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"need two (H, W, 3) images of one shape, got {photo.shape} and {restored.shape}")
        height, width = photo.shape[:2]
        f = self.factor(height, width)
        luma = block_mean(photo, f) @ LUMA
        r = min(self.radius, (min(luma.shape) - 1) // 2)
        if r < 1:  # too small to have flat regions worth a window
            return restored
        luma -= luma.mean()  # centred: float32 box sums of squares stay exact enough on a flat sky
        mean_y = box_mean(luma, r)
        std_levels = np.sqrt(np.maximum(box_mean(luma * luma, r) - mean_y**2, 0.0)) * Y_LEVELS
        mask = np.clip((self.textured_std - std_levels) / (self.textured_std - self.flat_std), 0.0, 1.0)
        if not mask.any():
            return restored
        fc = f * self.coefficient_step
        a, b = self._stretch(block_mean(photo, fc), block_mean(restored, fc), r // self.coefficient_step)
        # Interpolated to full width once; each band of rows then only interpolates between rows.
        mask_wide = widen(mask.astype(np.float32), f, width)
        a_wide, b_wide = widen(a, fc, width), widen(b, fc, width)
        out = np.empty_like(restored, dtype=np.float32)
        for top in range(0, height, BAND_ROWS):
            rows = np.arange(top, min(top + BAND_ROWS, height))
            m_up = heighten(mask_wide, f, rows)
            if not m_up.any():  # no flat pixel in this band: nothing to fit
                out[rows] = restored[rows]
                continue
            band = heighten(a_wide, fc, rows)
            band *= photo[rows]
            band += heighten(b_wide, fc, rows)
            band -= restored[rows]
            band *= m_up[..., None]
            band += restored[rows]
            out[rows] = band
        return out

    def _stretch(self, guide: np.ndarray, p: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
        """He et al.'s guided filter coefficients, window-averaged: p ~ a * guide + b per channel.

        Each output channel fitted on the same channel of the photo: a per-channel stretch is what
        dehazing is (J = (I - A) / t + A), and the photo's own colour survives an identity. float32
        throughout, on values centred per channel: the box sums stay small, so float32 keeps the
        variances of a flat sky exact enough, at half the memory of float64.
        """
        r = max(1, min(r, (min(guide.shape[:2]) - 1) // 2))
        guide_offset, p_offset = guide.mean(axis=(0, 1)), p.mean(axis=(0, 1))
        guide, p = guide - guide_offset, p - p_offset
        mean_i, mean_p = box_mean(guide, r), box_mean(p, r)
        var_i = np.maximum(box_mean(guide * guide, r) - mean_i**2, 0.0)
        a = (box_mean(guide * p, r) - mean_i * mean_p) / (var_i + np.float32(self.eps_levels / Y_LEVELS) ** 2)
        b = mean_p + p_offset - a * (mean_i + guide_offset)
        return box_mean(a, r), box_mean(b, r)


def block_mean(image: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (the last row and column of blocks padded with edge pixels).

    Summed as f whole rows, then f strided column slices: ~10x faster than a mean over two
    reshaped axes on a 12-MP photo."""
    if f == 1:
        return image
    h, w = image.shape[:2]
    extra = image.shape[2:]
    if h % f or w % f:
        image = np.pad(image, ((0, -h % f), (0, -w % f)) + ((0, 0),) * len(extra), mode="edge")
    rows_out, cols_out = image.shape[0] // f, image.shape[1] // f
    row_sums = image.reshape(rows_out, f, -1).sum(axis=1, dtype=np.float32).reshape(rows_out, cols_out, f, -1)
    out = row_sums[:, :, 0].copy()
    for j in range(1, f):
        out += row_sums[:, :, j]
    out *= np.float32(1.0 / (f * f))
    return out.reshape((rows_out, cols_out, *extra))


def box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r + 1)^2 window centred on each pixel (edges reflected); same shape and dtype as `a`."""
    k = 2 * r + 1
    extra = ((0, 0),) * (a.ndim - 2)
    c = np.pad(a, ((r + 1, r), (r + 1, r)) + extra, mode="reflect")
    c[0] = 0
    c[:, 0] = 0
    for i in range(1, c.shape[0]):  # row by row: whole-row adds, ~3x numpy's cumsum along axis 0
        np.add(c[i - 1], c[i], out=c[i])
    np.cumsum(c, axis=1, out=c)
    h, w = a.shape[:2]
    out = c[k : k + h, k : k + w] - c[:h, k : k + w]
    out -= c[k : k + h, :w]
    out += c[:h, :w]
    out *= np.asarray(1.0 / (k * k), a.dtype)
    return out


def _bilinear(index: np.ndarray, f: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution positions -> the two block-mean samples around each and the second's weight:
    each block's value sits at its centre, edges held."""
    pos = np.clip((index.astype(np.float32) + 0.5) / f - 0.5, 0, size - 1)
    lo = np.floor(pos).astype(np.int64)
    return lo, np.minimum(lo + 1, size - 1), (pos - lo).astype(np.float32)


def heighten(low: np.ndarray, f: int, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` of the bilinear upsampling along the first axis (whole rows: contiguous work)."""
    if f == 1:
        return low[rows]
    r0, r1, w = _bilinear(rows, f, low.shape[0])
    w = w.reshape((-1,) + (1,) * (low.ndim - 1))
    below = low[r0]
    band = low[r1] - below
    band *= w
    band += below
    return band


def widen(low: np.ndarray, f: int, width: int) -> np.ndarray:
    """Bilinear upsampling along the second axis to `width` columns, by `heighten` on the transpose."""
    if f == 1:
        return low[:, :width]
    transposed = np.ascontiguousarray(np.swapaxes(low, 0, 1))
    return np.ascontiguousarray(np.swapaxes(heighten(transposed, f, np.arange(width)), 0, 1))
