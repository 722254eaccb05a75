"""The flat-region guard: blotches painted into flat regions go, textured regions and dehazing's
brightness stay, any size works."""

import numpy as np
import pytest

from contract.flat_guard import BAND_ROWS, FlatGuard, block_mean, box_mean, heighten, widen
from training.metrics import flat_structure, quantize


def sky_over_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) float32: a flat sky with 8-bit-like noise over a strongly textured lower half."""
    rng = np.random.default_rng(seed)
    photo = np.full((h, w, 3), [0.75, 0.8, 0.85], np.float32) + rng.normal(0, 0.002, (h, w, 3)).astype(np.float32)
    photo[h // 2 :] = rng.random((h - h // 2, w, 3), dtype=np.float32)
    return np.clip(photo, 0, 1)


def with_stain(image: np.ndarray, top: int, left: int, size: int, depth: float = 0.25) -> np.ndarray:
    """A soft dark blotch, as the network paints into skies."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    c = size / 2
    blob = np.exp(-(((yy - top - c) ** 2 + (xx - left - c) ** 2) / (2 * (size / 4) ** 2)))
    return (image - depth * blob[..., None]).astype(np.float32)


def test_a_stain_painted_into_a_flat_sky_is_taken_out_and_a_large_one_softened():
    """Structure up to the window (33 px at the working resolution) goes; a stain twice that size
    keeps its smooth core, a fraction of its blotch score (measured: 16 px 23 -> 1.08, 64 px
    17.8 -> 5.3 on this photo)."""
    photo = sky_over_texture(256, 384)
    for size, bound in ((16, 1.5), (64, 8.0)):
        stained = with_stain(photo, 30, 150, size, depth=0.1)
        guarded = FlatGuard().apply(photo, stained)
        before = flat_structure(quantize(photo), quantize(stained)).score
        after = flat_structure(quantize(photo), quantize(guarded)).score
        assert before > 15 and after < bound, (size, before, after)


def test_the_textured_region_is_kept_exactly():
    photo = sky_over_texture(256, 384)
    restored = np.clip(photo * 0.9 + 0.03, 0, 1).astype(np.float32)
    restored[200:] = photo[200:][:, ::-1]  # a change no local stretch of the photo could make
    guarded = FlatGuard().apply(photo, restored)
    np.testing.assert_array_equal(guarded[200:], restored[200:])


def test_a_flat_region_keeps_the_restorations_brightness():
    """Dehazing darkens and stretches a flat hazy sky; the guard keeps its level (a local affine
    function of the photo fits a constant shift exactly)."""
    photo = sky_over_texture(256, 384)
    darker = np.clip(photo - 0.2, 0, 1).astype(np.float32)
    guarded = FlatGuard().apply(photo, darker)
    sky = (slice(0, 100), slice(0, 384))
    assert abs(float(guarded[sky].mean() - darker[sky].mean())) < 0.5 / 255


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (40, 33), (BAND_ROWS + 37, 701), (1300, 1100)])
def test_any_size_comes_back_the_same_shape_and_finite(shape):
    photo = sky_over_texture(*shape, seed=1)
    restored = with_stain(photo, shape[0] // 8, shape[1] // 3, max(1, min(shape) // 4))
    guarded = FlatGuard().apply(photo, restored)
    assert guarded.shape == photo.shape and guarded.dtype == np.float32
    assert np.isfinite(guarded).all()


def test_downscaled_fit_matches_the_full_resolution_fit_on_a_large_photo():
    """Coefficients fitted at the working resolution and upsampled (the fast guided filter) agree
    with the same guard fitted at full resolution to within a grey level or two on a smooth sky."""
    photo = sky_over_texture(1024, 1536, seed=2)
    stained = with_stain(photo, 100, 600, 160)
    fast = FlatGuard().apply(photo, stained)
    full = FlatGuard(working_side=1536, radius=48).apply(photo, stained)
    sky = (slice(0, 400), slice(0, 1536))
    assert np.abs(fast[sky] - full[sky]).max() < 2.5 / 255


def test_coefficients_fitted_on_larger_blocks_match_the_fit_at_the_working_resolution():
    """The default fits the stretch on 2x2 blocks with half the radius (a quarter of the work): on a
    stained sky over texture it takes the stain out as the fit at the working resolution does."""
    photo = sky_over_texture(480, 640, seed=3)
    stained = with_stain(photo, 60, 250, 24)
    fine, coarse = FlatGuard(coefficient_step=1), FlatGuard()
    assert fine.factor(480, 640) == coarse.factor(480, 640) == 1
    fine_out, coarse_out = fine.apply(photo, stained), coarse.apply(photo, stained)
    sky = (slice(0, 200), slice(None))
    assert np.abs(fine_out[sky] - coarse_out[sky]).mean() < 0.1 / 255
    assert np.abs(fine_out[sky] - coarse_out[sky]).max() < 1.0 / 255
    assert np.abs(coarse_out[sky] - photo[sky]).max() < np.abs(stained[sky] - photo[sky]).max() / 4
    np.testing.assert_array_equal(coarse_out[300:], stained[300:])  # texture: the restoration as it is


def test_helpers_are_exact_on_constants_and_shapes():
    a = np.full((10, 13, 3), 0.25, np.float32)
    assert block_mean(a, 4).shape == (3, 4, 3) and np.allclose(block_mean(a, 4), 0.25)
    assert np.allclose(box_mean(a.astype(np.float64), 3), 0.25)
    low = np.arange(12, dtype=np.float32).reshape(3, 4)
    up = heighten(widen(low, 4, 13), 4, np.arange(10))
    assert up.shape == (10, 13) and up.min() >= low.min() and up.max() <= low.max()


def window_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over each (2r + 1)^2 window of `a` with reflected edges, the windows taken one by one."""
    pad = ((r, r), (r, r)) + ((0, 0),) * (a.ndim - 2)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(a, pad, mode="reflect"), (2 * r + 1,) * 2, (0, 1))
    return windows.mean(axis=(-2, -1))


def test_helpers_match_their_plain_definitions():
    """The fast forms (row sums, row-by-row cumulative sums, interpolation by whole rows) against
    the definitions written out: block means of edge-padded blocks, window means over a reflected
    border, and bilinear weights at each block's centre with edges held."""
    rng = np.random.default_rng(3)
    image = rng.random((23, 30, 3), dtype=np.float32)
    padded = np.pad(image, ((0, 1), (0, 2), (0, 0)), mode="edge")  # 24 x 32: whole 4 x 4 blocks
    assert np.allclose(block_mean(image, 4), padded.reshape(6, 4, 8, 4, 3).mean(axis=(1, 3)), atol=1e-6)
    assert np.allclose(box_mean(image, 3), window_mean(image, 3), atol=1e-6)
    low, f = rng.random((5, 7), dtype=np.float32), 3
    centres_y, centres_x = np.arange(5) * f + (f - 1) / 2, np.arange(7) * f + (f - 1) / 2
    rows_first = np.stack([np.interp(np.arange(20), centres_x, row) for row in low])
    expected = np.stack([np.interp(np.arange(14), centres_y, col) for col in rows_first.T], axis=1)
    assert np.allclose(heighten(widen(low, f, 20), f, np.arange(14)), expected, atol=1e-6)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        FlatGuard().apply(np.zeros((8, 8, 3), np.float32), np.zeros((8, 9, 3), np.float32))
    with pytest.raises(ValueError, match="flat_std"):
        FlatGuard(flat_std=6.0, textured_std=3.0)
    with pytest.raises(ValueError, match="coefficient_step"):
        FlatGuard(radius=2, coefficient_step=3)


def written_out_guard(photo: np.ndarray, restored: np.ndarray, guard: FlatGuard) -> np.ndarray:
    """He et al.'s guided filter and the flatness mask at full resolution, in float64, from window
    means taken one by one: what FlatGuard computes when no downscaling is needed."""

    def box(a: np.ndarray) -> np.ndarray:
        return window_mean(a, guard.radius)

    guide, p = photo.astype(np.float64), restored.astype(np.float64)
    luma = guide @ np.array([0.299, 0.587, 0.114])
    std = np.sqrt(np.maximum(box(luma * luma) - box(luma) ** 2, 0)) * 219
    mask = np.clip((guard.textured_std - std) / (guard.textured_std - guard.flat_std), 0, 1)
    mean_i, mean_p = box(guide), box(p)
    var_i = np.maximum(box(guide * guide) - mean_i**2, 0)
    a = (box(guide * p) - mean_i * mean_p) / (var_i + (guard.eps_levels / 219) ** 2)
    b = mean_p - a * mean_i
    return p + mask[..., None] * (box(a) * guide + box(b) - p)


@pytest.mark.parametrize("flat_rows", [(0, 40), (50, 70), (80, 120), (0, 120)])
def test_the_guard_is_the_written_out_guided_filter(flat_rows):
    """Whatever part of the photo is flat (top, a band, bottom, all of it), the fast path's output
    is the full-resolution definition's, within float32 rounding (0.03 grey level)."""
    rng = np.random.default_rng(5)
    photo = rng.random((120, 150, 3), dtype=np.float32)
    top, bottom = flat_rows
    photo[top:bottom] = np.float32([0.6, 0.65, 0.7]) + rng.normal(0, 0.003, (bottom - top, 150, 3)).astype(np.float32)
    restored = with_stain(np.clip(photo * 0.95 + 0.02, 0, 1), (top + bottom) // 2 - 8, 60, 16, depth=0.1)
    guard = FlatGuard(radius=6, coefficient_step=1)
    assert guard.factor(*photo.shape[:2]) == 1
    np.testing.assert_allclose(guard.apply(photo, restored), written_out_guard(photo, restored, guard), atol=1e-4)
