"""PSNR/SSIM as the field reports them: known values, the BT.601 luma, a reference SSIM."""

import math

import numpy as np
import pytest

from training.metrics import (
    SSIM_C1,
    SSIM_C2,
    fine_structure_change,
    flat_mask,
    flat_structure,
    gaussian_window,
    image_metrics,
    psnr,
    quantize,
    rgb_to_y,
    ssim,
)


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB with smooth structure and fine detail, so SSIM has something to measure."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xs / 3.0)[..., None] * np.cos(ys / 5.0)[..., None] * np.array([1.0, 0.6, -0.8])
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).round().astype(np.uint8)


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 written out window by window (11x11 Gaussian, valid positions)."""
    g = gaussian_window()
    win = np.outer(g, g)
    x, y = x.astype(np.float64), y.astype(np.float64)
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mu_a, mu_b = (win * a).sum(), (win * b).sum()
            var_a, var_b = (win * (a - mu_a) ** 2).sum(), (win * (b - mu_b) ** 2).sum()
            cov = (win * (a - mu_a) * (b - mu_b)).sum()
            values.append(
                (2 * mu_a * mu_b + SSIM_C1)
                * (2 * cov + SSIM_C2)
                / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
            )
    return float(np.mean(values))


def test_identical_images_are_perfect() -> None:
    img = texture(32, 40)
    m = image_metrics(img, img.copy())
    assert m == {"psnr_y": math.inf, "ssim_y": pytest.approx(1.0, abs=1e-12), "psnr_rgb": math.inf}


def test_constant_offset_gives_exact_psnr() -> None:
    gt = np.full((16, 16, 3), 100, np.uint8)
    m = image_metrics(gt + np.uint8(5), gt)
    assert m["psnr_rgb"] == pytest.approx(20 * math.log10(255 / 5))
    y_step = 5 * (65.481 + 128.553 + 24.966) / 255  # a grey step of 5 moves Y by 5 * 219/255
    assert m["psnr_y"] == pytest.approx(20 * math.log10(255 / y_step))


def test_gaussian_noise_gives_expected_psnr() -> None:
    rng = np.random.default_rng(0)
    gt = np.full((256, 256, 3), 128.0)
    assert psnr(gt + rng.normal(0, 10, gt.shape), gt) == pytest.approx(20 * math.log10(255 / 10), abs=0.05)


def test_luma_matches_bt601_reference_points() -> None:
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(rgb)[0], [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966])


def test_ssim_matches_windowed_reference() -> None:
    a, b = texture(14, 19, seed=1)[..., 0], texture(14, 19, seed=2)[..., 0]
    assert ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=1e-10)


def test_ssim_of_shifted_copy_is_below_one_and_symmetric() -> None:
    img = rgb_to_y(texture(48, 64))
    shifted = np.roll(img, 1, axis=1)
    value = ssim(img, shifted)
    assert 0.0 < value < 0.99
    assert ssim(shifted, img) == pytest.approx(value)
    assert ssim(img, np.roll(img, 3, axis=1)) < value  # a larger shift is worse


def test_ssim_of_colour_image_is_mean_over_channels() -> None:
    a, b = texture(20, 24, seed=3), texture(20, 24, seed=4)
    assert ssim(a, b) == pytest.approx(np.mean([ssim(a[..., c], b[..., c]) for c in range(3)]))


def test_quantize_rounds_and_clips() -> None:
    out = quantize(np.array([[[-0.1, 0.5, 1.2]], [[0.2 / 255, 0.6 / 255, 1.0]]]))
    np.testing.assert_array_equal(out, [[[0, 128, 255]], [[0, 1, 255]]])


def test_errors_name_the_problem() -> None:
    img = texture(16, 16)
    with pytest.raises(TypeError, match="8-bit"):
        image_metrics(img / 255.0, img)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(img, img[:8])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(img[:10], img[:10])


# ---- flat-region (blotch) measure -------------------------------------------------------------


def sky_over_scene(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """uint8: a smooth sky with faint sensor noise over the top 45%, a drawn city below."""
    from training.scenes import draw_city_scene, to_uint8

    rng = np.random.default_rng(seed)
    image = to_uint8(draw_city_scene(h, w, seed=seed, noise=0.0)).astype(np.float64)
    rows = np.arange(h)[:, None, None]
    sky = 150 + 60 * rows / h + rng.normal(0, 0.8, (h, w, 3))
    top = int(0.45 * h)
    image[:top] = np.broadcast_to(sky[:top], (top, w, 3))
    return np.clip(image, 0, 255).round().astype(np.uint8)


def with_blob(image: np.ndarray, depth: float, sigma: float, centre: tuple[int, int]) -> np.ndarray:
    """A dark Gaussian stain of `depth` grey levels painted on."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    stain = depth * np.exp(-((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2) / (2 * sigma**2))
    return np.clip(image - stain[..., None], 0, 255).round().astype(np.uint8)


def test_flat_structure_is_one_for_identity_and_a_contrast_stretch():
    lq = sky_over_scene()
    same = flat_structure(lq, lq)
    assert same.score == 1.0 and same.gain == 1.0 and 0.3 < same.flat_share < 0.6
    mask, luma = flat_mask(lq)
    assert mask.mean() == same.flat_share and mask.shape == luma.shape == (384, 512)  # the working resolution
    assert mask[: int(0.4 * 384)].mean() > 0.8  # the sky
    mean = lq.astype(np.float64).mean()
    stretched = np.clip(mean + 1.4 * (lq - mean), 0, 255).round().astype(np.uint8)
    result = flat_structure(lq, stretched)
    assert result.gain == pytest.approx(1.4, abs=0.05)
    assert result.score < 1.15  # the stretch is divided out (left: 8-bit rounding, a little clipping)


def test_flat_structure_discounts_dehazing_a_flat_sky():
    """Haze (t = 0.6 toward a bright airlight) removed: a global affine change of the image."""
    clear = sky_over_scene(seed=1)
    hazy = np.clip(0.6 * clear + 0.4 * 230, 0, 255).round().astype(np.uint8)
    assert flat_structure(hazy, clear).score < 1.15


@pytest.mark.parametrize(("depth", "sigma"), [(40, 12), (15, 20)])
def test_a_dark_stain_on_the_sky_scores_above_the_threshold(depth, sigma):
    lq = sky_over_scene()
    stained = with_blob(lq, depth, sigma, centre=(50, 160))
    result = flat_structure(lq, stained)
    assert result.score > 2.0
    top, left, bottom, right = result.box
    assert top - 2 * sigma <= 50 <= bottom + 2 * sigma and left - 2 * sigma <= 160 <= right + 2 * sigma


def test_stains_over_the_whole_sky_cannot_hide_behind_the_contrast_gain():
    """The gain is measured where the input has structure: a sky painted dark all over raises
    the output's overall contrast, and must still score high, as must a photo that is all sky."""
    lq = sky_over_scene()
    stained = lq
    for x in range(20, 320, 60):
        stained = with_blob(stained, 60, 15, centre=(50, x))
    result = flat_structure(lq, stained)
    assert result.gain == pytest.approx(1.0, abs=0.05) and result.score > 10
    sky = np.ascontiguousarray(lq[:100])
    assert flat_structure(sky, np.ascontiguousarray(stained[:100])).score > 10


def test_flat_structure_is_resolution_free_and_needs_a_flat_region():
    lq = sky_over_scene(240, 320)
    stained = with_blob(lq, 15, 20, centre=(50, 160))
    double = [np.repeat(np.repeat(a, 2, axis=0), 2, axis=1) for a in (lq, stained)]
    assert flat_structure(*double).score == pytest.approx(flat_structure(lq, stained).score, rel=0.25)
    busy = texture(96, 128)
    assert flat_structure(busy, busy).score is None  # no flat block: nothing to judge


def with_streaks(image: np.ndarray, every: int = 9, level: int = 245) -> np.ndarray:
    """Thin bright vertical streaks, one column in `every`, over the whole frame."""
    streaked = image.copy()
    streaked[:, ::every] = level
    return streaked


def test_fine_structure_change_ignores_identity_and_a_contrast_stretch():
    lq = texture(240, 320)
    assert fine_structure_change(lq, lq) == 0.0
    mean = lq.astype(np.float64).mean()
    stretched = np.clip(mean + 1.3 * (lq - mean), 0, 255).round().astype(np.uint8)
    assert fine_structure_change(lq, stretched) < 0.05  # dehazing's stretch is divided out


def test_fine_structure_change_sees_streaks_taken_out_and_detail_flattened():
    clean = texture(240, 320, seed=3)
    rainy = with_streaks(clean)
    removed = fine_structure_change(rainy, clean)
    assert 0.3 < removed < 1.0
    assert fine_structure_change(rainy, with_streaks(clean, level=200)) < removed  # fainter, not gone
    flat = np.full_like(clean, 128)
    assert fine_structure_change(clean, flat) == pytest.approx(1.0)  # a lower gain is not divided out
