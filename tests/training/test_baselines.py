"""Dark channel prior: its filters against direct loops, and that it actually dehazes."""

import colorsys

import numpy as np
import pytest

from training.baselines import box_mean, dark_channel_prior, guided_filter, min_filter
from training.metrics import psnr
from training.synth import apply


def colour_blocks(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Saturated 8x8 colour blocks: every patch has a dark channel, as the prior assumes of photos."""
    rng = np.random.default_rng(seed)
    hues = rng.random((h // 8 + 1, w // 8 + 1))
    blocks = np.array(
        [
            [colorsys.hsv_to_rgb(hue, 1.0, 0.4 + 0.6 * ((i + j) % 2)) for j, hue in enumerate(row)]
            for i, row in enumerate(hues)
        ]
    )
    return np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:h, :w].astype(np.float32)


def test_min_filter_matches_direct_minimum() -> None:
    a = np.random.default_rng(0).random((13, 17))
    size, r = 5, 2
    padded = np.pad(a, r, mode="edge")
    expected = np.array([[padded[i : i + size, j : j + size].min() for j in range(17)] for i in range(13)])
    np.testing.assert_array_equal(min_filter(a, size), expected)


def test_box_mean_matches_direct_mean_inside_the_image() -> None:
    a = np.random.default_rng(1).random((9, 12))
    r = 2
    expected = np.array(
        [[a[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean() for j in range(12)] for i in range(9)]
    )
    np.testing.assert_allclose(box_mean(a, r), expected)


def test_guided_filter_keeps_a_constant_and_smooths_noise() -> None:
    rng = np.random.default_rng(2)
    guide = rng.random((32, 32))
    np.testing.assert_allclose(guided_filter(guide, np.full((32, 32), 0.4), 4, 1e-3), 0.4)
    noise = rng.random((32, 32))
    assert guided_filter(np.zeros((32, 32)), noise, 4, 1e-3).std() < 0.5 * noise.std()


def test_dcp_inverts_the_scattering_model() -> None:
    clean = colour_blocks(96, 128)
    transmission = np.linspace(0.05, 0.9, 96)[:, None, None]  # sky-like far rows on top
    hazy = clean * transmission + np.array([0.9, 0.88, 0.92]) * (1 - transmission)
    out = dark_channel_prior(hazy)
    assert out.shape == hazy.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert psnr(out, clean, 1.0) > psnr(hazy, clean, 1.0) + 4.0


def test_dcp_improves_synthetic_haze() -> None:
    clean = colour_blocks(96, 128, seed=3)
    hazy = apply("haze", clean, np.random.default_rng(1), 0.7)
    assert psnr(dark_channel_prior(hazy), clean, 1.0) > psnr(hazy, clean, 1.0) + 3.0


def test_dcp_takes_uint8_like_float() -> None:
    hazy = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_allclose(dark_channel_prior(hazy), dark_channel_prior(hazy / 255.0), atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 7, 3), (1, 30, 3)])
def test_dcp_handles_images_smaller_than_its_windows(shape: tuple[int, int, int]) -> None:
    hazy = np.random.default_rng(5).random(shape)
    assert dark_channel_prior(hazy).shape == shape
