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

    def __post_init__(self) -> None:
        if not 0 <= self.flat_std < self.textured_std:
            raise ValueError(f"need 0 <= flat_std < textured_std, got {self.flat_std} and {self.textured_std}")
        if self.working_side < 2 * self.radius + 1 or self.radius < 1:
            raise ValueError(f"working_side {self.working_side} must hold a window of radius {self.radius} >= 1")

    def factor(self, height: int, width: int) -> int:
        """Block size that brings the longer side down to about `working_side` (1: no downscaling)."""
        return max(1, round(max(height, width) / self.working_side))

    def apply(self, photo: np.ndarray, restored: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 0..1 photo and its restoration -> the guarded restoration (float32 0..1)."""
        if photo.shape != restored.shape or photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"need two (H, W, 3) images of one shape, got {photo.shape} and {restored.shape}")
        height, width = photo.shape[:2]
        f = self.factor(height, width)
        # float32 throughout, on values centred per channel: the box sums stay small, so float32
        # keeps the variances of a flat sky exact enough, at half the memory of float64.
        guide, p = block_mean(photo, f), block_mean(restored, f)
        guide_offset, p_offset = guide.mean(axis=(0, 1)), p.mean(axis=(0, 1))
        guide, p = guide - guide_offset, p - p_offset
        luma = guide @ LUMA
        r = min(self.radius, (min(luma.shape) - 1) // 2)
        if r < 1:  # too small to have flat regions worth a window
            return restored
        mean_y = box_mean(luma, r)
        std_levels = np.sqrt(np.maximum(box_mean(luma * luma, r) - mean_y**2, 0.0)) * Y_LEVELS
        mask = np.clip((self.textured_std - std_levels) / (self.textured_std - self.flat_std), 0.0, 1.0)
        if not mask.any():
            return restored
        # Each output channel fitted on the same channel of the photo: a per-channel stretch is what
        # dehazing is (J = (I - A) / t + A), and the photo's own colour survives an identity.
        mean_i, mean_p = box_mean(guide, r), box_mean(p, r)
        var_i = np.maximum(box_mean(guide * guide, r) - mean_i**2, 0.0)
        a = (box_mean(guide * p, r) - mean_i * mean_p) / (var_i + np.float32(self.eps_levels / Y_LEVELS) ** 2)
        b = mean_p + p_offset - a * (mean_i + guide_offset)
        a, b, mask = box_mean(a, r), box_mean(b, r), mask.astype(np.float32)
        out = np.empty_like(restored, dtype=np.float32)
        for top in range(0, height, BAND_ROWS):
            rows = np.arange(top, min(top + BAND_ROWS, height))
            m_up = upsample(mask, f, rows, width)
            if not m_up.any():  # no flat pixel in this band: nothing to fit
                out[rows] = restored[rows]
                continue
            a_up, b_up = upsample(a, f, rows, width), upsample(b, f, rows, width)
            stretched = a_up * photo[rows] + b_up
            out[rows] = restored[rows] + m_up[..., None] * (stretched - restored[rows])
        return out


def block_mean(image: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (the last row and column of blocks padded with edge pixels)."""
    if f == 1:
        return image
    h, w = image.shape[:2]
    ph, pw = -h % f, -w % f
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    shape = (padded.shape[0] // f, f, padded.shape[1] // f, f, *image.shape[2:])
    return padded.reshape(shape).mean(axis=(1, 3))


def box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r + 1)^2 window centred on each pixel (edges reflected); same shape and dtype as `a`."""
    k = 2 * r + 1
    extra = ((0, 0),) * (a.ndim - 2)
    c = np.pad(a, ((r + 1, r), (r + 1, r)) + extra, mode="reflect")
    c[0] = 0
    c[:, 0] = 0
    np.cumsum(c, axis=0, out=c)
    np.cumsum(c, axis=1, out=c)
    h, w = a.shape[:2]
    out = c[k : k + h, k : k + w] - c[:h, k : k + w]
    out -= c[k : k + h, :w]
    out += c[:h, :w]
    out *= np.asarray(1.0 / (k * k), a.dtype)
    return out


def upsample(low: np.ndarray, f: int, rows: np.ndarray, width: int) -> np.ndarray:
    """Rows `rows` of the bilinear upsampling of a block-mean map back to full resolution (`width`
    columns): each low-res value sits at its block's centre, edges held."""
    if f == 1:
        return low[rows, :width]

    def weights(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((index.astype(np.float32) + 0.5) / f - 0.5, 0, size - 1)
        lo = np.floor(pos).astype(np.int64)
        return lo, np.minimum(lo + 1, size - 1), (pos - lo).astype(np.float32)

    r0, r1, wr = weights(rows, low.shape[0])
    c0, c1, wc = weights(np.arange(width), low.shape[1])
    extra = (None,) * (low.ndim - 2)
    wr, wc = wr[(slice(None), None, *extra)], wc[(None, slice(None), *extra)]
    band = low[r0] * (1 - wr) + low[r1] * wr
    return band[:, c0] * (1 - wc) + band[:, c1] * wc
