"""The one procedural scene maker: any size, deterministic per seed, and torch-free."""

import subprocess
import sys

import numpy as np
import pytest

from training.scenes import draw_city_scene, to_uint8


def test_importing_scenes_does_not_import_torch():
    """The service tests and the torch-free benchmarks draw their images with it."""
    code = "import sys, training.scenes; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 5), (4, 4), (9, 11), (72, 96)])
def test_any_size_is_an_rgb_image_fixed_by_its_seed(h, w):
    img = draw_city_scene(h, w, seed=3)
    assert img.shape == (h, w, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    np.testing.assert_array_equal(img, draw_city_scene(h, w, seed=3))


def test_seeds_draw_different_scenes():
    assert not np.array_equal(draw_city_scene(48, 64, seed=0), draw_city_scene(48, 64, seed=1))


def test_noise_is_added_over_the_same_scene():
    clean, noisy = draw_city_scene(96, 128, seed=2), draw_city_scene(96, 128, seed=2, noise=0.02)
    inside = (clean > 0.1) & (clean < 0.9)  # away from the clip at 0 and 1
    assert np.std((noisy - clean)[inside]) == pytest.approx(0.02, rel=0.1)
    assert abs(np.mean((noisy - clean)[inside])) < 0.002


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-0.1, 0.0, 0.5, 1.0, 1.2])), [0, 0, 128, 255, 255])
