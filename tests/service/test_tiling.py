"""Tiling is pure: cover every pixel, keep the grid, blend back exactly."""

import numpy as np
import pytest

from service import tiling


@pytest.mark.parametrize("length", [1, 63, 64, 65, 100, 150, 200, 257, 1000])
@pytest.mark.parametrize(("tile", "overlap", "align"), [(64, 16, 16), (64, 0, 16), (256, 32, 16), (96, 32, 1)])
def test_tile_starts_cover_with_overlap_on_grid(length, tile, overlap, align):
    starts = tiling.tile_starts(length, tile, overlap, align)
    assert starts[0] == 0
    assert all(s % align == 0 for s in starts)
    assert starts[-1] + tile >= length
    assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    assert tiling.padded_length(length, tile, overlap, align) - length < max(align, tile)


def test_tile_starts_refuses_overlap_finer_than_grid():
    with pytest.raises(ValueError, match="alignment"):
        tiling.tile_starts(300, 64, 56, 16)


@pytest.mark.parametrize(("h", "w"), [(150, 200), (64, 200), (20, 300), (65, 65)])
def test_split_then_untile_is_identity(h, w):
    rng = np.random.default_rng(0)
    image = rng.random((3, h, w), dtype=np.float32)
    tiles, boxes = tiling.split(image, 64, 16, 16)
    assert {t.shape for t in tiles} == {(3, min(64, -(-h // 16) * 16), min(64, -(-w // 16) * 16))}
    assert len(tiles) == tiling.count_tiles(h, w, 64, 16, 16)
    out = tiling.untile(tiles, boxes, h, w, 16)
    np.testing.assert_allclose(out, image, atol=1e-6)


@pytest.mark.parametrize(("h", "w"), [(48, 200), (40, 200), (200, 33)])
def test_a_side_shorter_than_a_tile_gets_no_more_padding_than_the_whole_image(h, w):
    """The whole image is padded to the grid (16) only; a full 64-px tile would add rows of
    repeated edge that change what the network does near the border."""
    image = np.random.default_rng(1).random((3, h, w), dtype=np.float32)
    tiles, _ = tiling.split(image, 64, 16, 16)
    short = min(h, w)
    assert all(min(t.shape[1:]) == -(-short // 16) * 16 < 64 for t in tiles)
    assert tiling.padded_length(short, 64, 16, 16) == -(-short // 16) * 16


def test_count_is_one_when_the_image_fits():
    assert not tiling.needs_tiling(64, 64, 64)
    assert tiling.count_tiles(64, 10, 64, 16, 16) == 1
    assert tiling.count_tiles(65, 10, 64, 16, 16) == 2


def test_blend_weights_are_smooth_and_sum_to_one_across_an_overlap():
    r = tiling.ramp(16)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    assert r.min() > 0 and np.all(np.diff(r) > 0)
    w = tiling.tile_weight(64, 64, 16, top=False, left=True, bottom=False, right=False)
    assert w[:, 16:].min() == 1.0 and w[0, 0] < 0.01


def test_blend_has_no_seam_between_two_different_constant_tiles():
    tiles = [np.zeros((1, 64, 64), np.float32), np.ones((1, 64, 64), np.float32)]
    out = tiling.blend(tiles, [(0, 0), (0, 48)], 64, 112, 16)
    row = out[0, 0]
    assert row[:48].max() == 0 and row[64:].min() == 1  # outside the overlap: each tile alone
    assert np.all(np.diff(row) >= 0) and np.diff(row).max() < 0.11  # a ramp, no step
