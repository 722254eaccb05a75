"""Full-reference image metrics as the restoration literature reports them.

PSNR and SSIM on the Y channel of 8-bit images (BasicSR's `rgb2ycbcr(y_only=True)`, ITU-R
BT.601, Y in 16..235 unrounded) and PSNR on RGB. SSIM is Wang et al. 2004 with an 11x11
Gaussian window (sigma 1.5) over valid positions only, as BasicSR computes it, so numbers are
comparable with published tables. Two no-reference checks of an output against its own input
complete them: `grid_score` (a stride-grid pattern) and `flat_structure` (stains painted into
flat regions such as skies).
"""

import math
from dataclasses import dataclass

import numpy as np

from contract.flat_guard import box_mean

Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0  # BT.601 on a 0..255 scale, offset 16
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def quantize(image: np.ndarray) -> np.ndarray:
    """Float image in 0..1 -> uint8, rounded: what saving to PNG does to a model's output."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float64 luma in 16..235."""
    return image.astype(np.float64) @ Y_WEIGHTS + 16.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over all elements; inf for identical inputs."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalized 1-D Gaussian taps (cv2.getGaussianKernel's values)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter_valid(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D filter over valid positions: (H, W) -> (H - k + 1, W - k + 1)."""
    k = len(taps)
    h, w = a.shape
    rows = sum(t * a[i : h - k + 1 + i] for i, t in enumerate(taps))
    return sum(t * rows[:, j : w - k + 1 + j] for j, t in enumerate(taps))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) images on a 0..255 scale; channels are averaged."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape[:2]}")
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c]) for c in range(a.shape[2])]))
    x, y = a.astype(np.float64), b.astype(np.float64)
    taps = gaussian_window()
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x**2
    var_y = _filter_valid(y * y, taps) - mu_y**2
    cov = _filter_valid(x * y, taps) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return float(np.mean(num / den))


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PSNR-Y, SSIM-Y and PSNR-RGB of two (H, W, 3) uint8 images (quantize float outputs first)."""
    if pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise TypeError(f"metrics are defined on 8-bit images, got {pred.dtype} and {gt.dtype}")
    y_pred, y_gt = rgb_to_y(pred), rgb_to_y(gt)
    return {"psnr_y": psnr(y_pred, y_gt), "ssim_y": ssim(y_pred, y_gt), "psnr_rgb": psnr(pred, gt)}


GRID_PERIOD = 16  # the backbone's total stride: where an upsampling pattern would repeat
GRID_GAP, GRID_REACH = 3, 8  # neighbour bins |d| in [GAP, REACH] around a harmonic (Hann leakage is |d| <= 1)


def _axis_spectrum(y: np.ndarray, axis: int) -> np.ndarray:
    """Power spectrum along `axis` (Hann-windowed, mean removed), averaged over the other axis."""
    lines = np.moveaxis(y, axis, -1)
    lines = lines - lines.mean(axis=-1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(lines * np.hanning(lines.shape[-1]), axis=-1)) ** 2
    return spectrum.mean(axis=0)


def grid_score(image: np.ndarray, period: int = GRID_PERIOD) -> float:
    """Periodic-artifact score: power at the harmonics k/period (k = 1..period/2) over the power
    expected there from nearby frequencies, averaged over both axes. 1.0 = no pattern; photos
    score about 1 (JPEG's 8-px blocks are harmonics of 1/16), a visible stride grid well above.

    `image` is (H, W, 3) uint8 or (H, W) luma; it is cropped to a multiple of `period` so the
    harmonics fall on exact FFT bins.
    """
    y = rgb_to_y(image) if image.ndim == 3 else image.astype(np.float64)
    h, w = (s - s % period for s in y.shape)
    if min(h, w) < 4 * period:
        raise ValueError(f"grid_score needs at least {4 * period}x{4 * period} pixels, got {y.shape}")
    y = y[:h, :w]
    ratios = []
    for axis, n in ((1, w), (0, h)):
        spectrum = _axis_spectrum(y, axis)
        peaks, around = 0.0, 0.0
        for k in range(1, period // 2 + 1):
            b = k * n // period
            near = [
                b + d for d in range(-GRID_REACH, GRID_REACH + 1) if GRID_GAP <= abs(d) and 0 < b + d < len(spectrum)
            ]
            peaks += spectrum[b]
            around += float(np.exp(np.mean(np.log(spectrum[near] + 1e-12))))  # geometric: spectra fall as ~1/f^2
        ratios.append(peaks / max(around, 1e-12))
    return float(np.mean(ratios))


FLAT_SIDE = 512  # working resolution (longer side): windows and blocks mean the same share of any photo
FLAT_WINDOWS = (5, 9, 17, 33)  # box windows (pixels at FLAT_SIDE): structure from fine to blotch-sized
FLAT_STD = 2.0  # a pixel is flat when the input's local std is below this at every window (Y levels)
FLAT_NOISE = 1.0  # Y levels: both energies get this floor, so 8-bit/JPEG noise on a flat sky counts as ~1
FLAT_BLOCK = 32  # pixels at FLAT_SIDE: a stain shows in the block it covers, not diluted by the whole sky
FLAT_BLOCK_SHARE = 0.25  # a block is scored when at least this share of its pixels is flat
FLAT_GAIN_SHARE = 0.05  # the contrast gain needs at least this share of structured (non-flat) input


@dataclass(frozen=True)
class FlatStructure:
    """`score`: the flat-region (blotch) measure, None when the input has no flat block;
    `box`: (top, left, bottom, right) of the worst block in the input's pixels; `gain`: the
    contrast gain that was divided out; `flat_share`: the share of flat input pixels."""

    score: float | None
    box: tuple[int, int, int, int] | None
    gain: float
    flat_share: float


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over a k x k window (k odd) centred on each pixel (edges reflected): the guard's filter."""
    return box_mean(a, k // 2)


def _working_luma(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> luma (Y, 16..235 scale) resized to `shape` (rows, cols)."""
    from PIL import Image

    y = Image.fromarray(rgb_to_y(image).astype(np.float32), mode="F")
    return np.asarray(y.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float64)


def _flat(y: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Local variances of working luma at every FLAT_WINDOWS size, and the flat mask they give."""
    variances = [np.maximum(_box_mean(y**2, k) - _box_mean(y, k) ** 2, 0.0) for k in FLAT_WINDOWS]
    return variances, np.all([v < FLAT_STD**2 for v in variances], axis=0)


def _working_shape(h: int, w: int) -> tuple[int, int]:
    scale = FLAT_SIDE / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if min(shape) < max(FLAT_WINDOWS):
        raise ValueError(
            f"the flat-region measure needs an aspect ratio that leaves {max(FLAT_WINDOWS)} px, got {h}x{w}"
        )
    return shape


def flat_mask(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat mask, luma) of an (H, W, 3) uint8 image at the working resolution (see flat_structure)."""
    y = _working_luma(image, _working_shape(*image.shape[:2]))
    return _flat(y)[1], y


def flat_structure(lq: np.ndarray, pred: np.ndarray) -> FlatStructure:
    """How much structure `pred` adds where `lq` is flat: the blotch measure (1.0 = none added).

    Both images' luma is resized to a longer side of FLAT_SIDE. A pixel is flat when the
    input's local standard deviation is below FLAT_STD at every window in FLAT_WINDOWS (a
    clear sky, a cloud's interior, dense haze). The global contrast gain g = std(pred)/std(lq)
    over the input's structured (non-flat) pixels is divided out, since dehazing rightly
    stretches contrast (measured where there is contrast to stretch, so structure painted into
    a large flat region cannot inflate g and hide itself; g = 1 when under FLAT_GAIN_SHARE of
    the input has structure). For every
    block of FLAT_BLOCK pixels that is at least FLAT_BLOCK_SHARE flat, and every window k,

        r = (mean_flat var_k(pred) + n^2) / (g^2 * mean_flat var_k(lq) + n^2),  n = FLAT_NOISE,

    where var_k is the local variance in a k x k window; the score is the largest r. A pure
    contrast stretch (pred = a + g * lq) scores 1, identity exactly 1; a dark stain on a sky
    scores well above 2, as its rim is structure the input lacked at that scale. Scale-free:
    a ratio of energies, on a fixed working resolution, so a photo's size does not change it.
    """
    if lq.shape != pred.shape or lq.ndim != 3:
        raise ValueError(f"need two (H, W, 3) images of one shape, got {lq.shape} and {pred.shape}")
    shape = _working_shape(*lq.shape[:2])
    scale = shape[0] / lq.shape[0]
    y_in, y_out = _working_luma(lq, shape), _working_luma(pred, shape)
    (var_in, flat), (var_out, _) = _flat(y_in), _flat(y_out)
    gain = 1.0  # an input with almost no structure has no contrast to stretch
    if (~flat).mean() >= FLAT_GAIN_SHARE:
        gain = float(y_out[~flat].std() / max(y_in[~flat].std(), FLAT_NOISE))
    noise = FLAT_NOISE**2
    best, box = None, None
    for top in range(0, shape[0], FLAT_BLOCK):
        for left in range(0, shape[1], FLAT_BLOCK):
            block = (slice(top, top + FLAT_BLOCK), slice(left, left + FLAT_BLOCK))
            mask = flat[block]
            if mask.mean() < FLAT_BLOCK_SHARE:
                continue
            r = max(
                (vo[block][mask].mean() + noise) / (gain**2 * vi[block][mask].mean() + noise)
                for vi, vo in zip(var_in, var_out, strict=True)
            )
            if best is None or r > best:
                best = float(r)
                bottom, right = min(top + FLAT_BLOCK, shape[0]), min(left + FLAT_BLOCK, shape[1])
                box = tuple(round(v / scale) for v in (top, left, bottom, right))
    return FlatStructure(best, box, gain, float(flat.mean()))


FINE_WINDOW = 5  # pixels at FLAT_SIDE: detail finer than this is what rain streaks and flakes are made of


def fine_structure_change(lq: np.ndarray, pred: np.ndarray) -> float:
    """How much of the input's fine detail the output changed, beyond a global contrast gain.

    Both lumas at the working resolution (FLAT_SIDE), high-passed (minus a FINE_WINDOW box mean):
    a and b. With g the least-squares gain of b on a, the score is mean|b - g*a| / mean|a|: 0 for
    identity or a pure contrast stretch (dehazing's), near 1 when all fine detail changed. On real
    rain with no ground truth it tells how many streaks a restoration took out (and what detail it
    smeared with them); on clear photos it is harm. g is never taken below 1: a drop of fine
    contrast is detail removed, so a flat grey output scores 1, not 0.
    """
    if lq.shape != pred.shape or lq.ndim != 3:
        raise ValueError(f"need two (H, W, 3) images of one shape, got {lq.shape} and {pred.shape}")
    shape = _working_shape(*lq.shape[:2])
    y_in, y_out = _working_luma(lq, shape), _working_luma(pred, shape)
    a = y_in - _box_mean(y_in, FINE_WINDOW)
    b = y_out - _box_mean(y_out, FINE_WINDOW)
    energy = float(np.abs(a).mean())
    if energy < 1e-6:
        return 0.0 if float(np.abs(b).mean()) < 1e-6 else 1.0
    gain = max(1.0, float((a * b).sum() / (a * a).sum()))
    return float(np.abs(b - gain * a).mean() / energy)
