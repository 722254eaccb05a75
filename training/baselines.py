"""Classical baselines that give the learned model's numbers context.

dark_channel_prior: He, Sun and Tang, "Single Image Haze Removal Using Dark Channel Prior"
(CVPR 2009 / TPAMI 2011), with the guided-filter refinement of the transmission (He et al.,
ECCV 2010) instead of soft matting. Pure numpy, O(pixels) whatever the window sizes.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def min_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Minimum over a centered size x size window of an (H, W) array, edges replicated."""
    r = size // 2
    padded = np.pad(a, ((r, size - 1 - r), (0, 0)), mode="edge")
    rows = sliding_window_view(padded, size, axis=0).min(axis=-1)
    padded = np.pad(rows, ((0, 0), (r, size - 1 - r)), mode="edge")
    return sliding_window_view(padded, size, axis=1).min(axis=-1)


def _box_sum(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Sum over a centered window of 2*radius+1 along `axis`, zeros outside (running sums)."""
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad), axis=axis)
    return np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis) - np.take(c, np.arange(n), axis=axis)


def box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean of an (H, W) array over the part of each (2r+1)^2 window inside the image."""
    ones = np.ones(a.shape[:2])
    count = _box_sum(_box_sum(ones, radius, 0), radius, 1)
    return _box_sum(_box_sum(a, radius, 0), radius, 1) / count


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of `src` that follows the edges of the (H, W) `guide`."""
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i**2
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def dark_channel_prior(
    image: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t0: float = 0.1,
    radius: int | None = None,
    eps: float = 1e-3,
) -> np.ndarray:
    """Dehaze an (H, W, 3) image (uint8, or float in 0..1) -> float32 in 0..1.

    Airlight A is the mean colour of the 0.1% brightest dark-channel pixels (more stable than
    He's single brightest pixel); transmission t = 1 - omega * dark(I / A), refined by a guided
    filter on the grey image. `radius` defaults to a tenth of the shorter side (~40 px at the
    validation sets' full size), so the refinement behaves the same on resized images.
    """
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    h, w, _ = img.shape
    dark = min_filter(img.min(axis=2), patch)
    top = max(1, int(round(h * w * 0.001)))
    brightest = np.argpartition(dark.ravel(), -top)[-top:]
    airlight = np.maximum(img.reshape(-1, 3)[brightest].mean(axis=0), 1e-3)
    transmission = 1.0 - omega * min_filter((img / airlight).min(axis=2), patch)
    radius = max(2, min(h, w) // 10) if radius is None else radius
    transmission = guided_filter(img.mean(axis=2), transmission, radius, eps)
    t = np.maximum(transmission, t0)[..., None]
    return np.clip((img - airlight) / t + airlight, 0.0, 1.0).astype(np.float32)
