"""Pure functions that cut a (C, H, W) image into fixed-size overlapping tiles and blend them back.

Tiles are `tile` x `tile` (the image is mirror-padded at the bottom/right to cover the last
window, as the backbone pads: `model.net.mirror_pad`), so tiles of large photos from different
requests share one shape and batch together; along a side shorter than a tile they are only as
long as that side, rounded up to the grid: padding a 720-px side to a 768-px tile put 48 rows of
padding under the bottom tiles that the whole photo never sees, and the output there changed
(36.7 dB tiled vs whole, raindrop prompt; bench/tile_consistency.py). Tile offsets sit on the backbone's pad-multiple
grid. Blending uses raised-cosine ramps over the overlap on interior edges only, normalized by
the summed weights, so there are no seams and border pixels keep full weight.
"""

import numpy as np


def needs_tiling(height: int, width: int, tile: int) -> bool:
    """Images that fit in one tile are sent whole (the backbone pads internally)."""
    return height > tile or width > tile


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of `tile`-long windows covering [0, length), neighbours sharing >= `overlap`.

    Starts are multiples of `align`: the backbone downsamples by its pad multiple, so only
    tiles on that grid see the same pixel phase as the whole image (a 1-pixel shift changes
    the output). The last window may run past `length`; `padded_length` says how far.
    """
    if length <= tile:
        return [0]
    if tile - overlap < align:
        raise ValueError(f"tile ({tile}) - overlap ({overlap}) must be >= the alignment ({align})")
    units = -(-(length - tile) // align)  # last start, in align units (rounded up)
    count = -(-(length - tile) // ((tile - overlap) // align * align)) + 1
    while True:
        starts = [align * round(i * units / (count - 1)) for i in range(count)]
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False)):
            return starts
        count += 1


def tile_extent(length: int, tile: int, align: int = 1) -> int:
    """A tile's length along a side: `tile`, or the side rounded up to `align` when shorter
    (what the backbone pads the whole image to)."""
    return min(tile, -(-length // align) * align)


def padded_length(length: int, tile: int, overlap: int, align: int = 1) -> int:
    """Length a side is padded to before splitting: covers the last window."""
    return tile_starts(length, tile, overlap, align)[-1] + tile_extent(length, tile, align)


def count_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> int:
    """Work items an image becomes: 1 when sent whole, else the number of tiles."""
    if not needs_tiling(height, width, tile):
        return 1
    return len(tile_starts(height, tile, overlap, align)) * len(tile_starts(width, tile, overlap, align))


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mirror-pad (C, H, W) at the bottom/right to (C, height, width), as the backbone pads
    (symmetric: the edge sample repeated, then the photo backwards)."""
    _, h, w = image.shape
    if (h, w) == (height, width):
        return image
    return np.pad(image, ((0, 0), (0, height - h), (0, width - w)), mode="symmetric")


def split(image: np.ndarray, tile: int, overlap: int, align: int = 1) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """(C, H, W) -> tiles of one shape (views where possible) and their (y, x) offsets.

    Windows that run past the image are mirror-padded one by one, as if the whole image had
    been padded to `padded_length` on both sides, without copying the whole image.
    """
    _, h, w = image.shape
    th, tw = tile_extent(h, tile, align), tile_extent(w, tile, align)
    boxes = [(y, x) for y in tile_starts(h, tile, overlap, align) for x in tile_starts(w, tile, overlap, align)]
    tiles = [pad_to(image[:, y : y + th, x : x + tw], th, tw) for y, x in boxes]
    return tiles, boxes


def ramp(overlap: int) -> np.ndarray:
    """Raised cosine rising over `overlap` samples; two opposite ramps sum to 1; never 0."""
    k = np.arange(overlap, dtype=np.float32) + 0.5
    return (0.5 - 0.5 * np.cos(np.pi * k / overlap)).astype(np.float32)


def tile_weight(height: int, width: int, overlap: int, top: bool, left: bool, bottom: bool, right: bool) -> np.ndarray:
    """(height, width) blend weight; ramps only on the edges that have a neighbour (True)."""
    wy = np.ones(height, dtype=np.float32)
    wx = np.ones(width, dtype=np.float32)
    if overlap > 0:
        r = ramp(overlap)
        if top:
            wy[:overlap] = r
        if bottom:
            wy[-overlap:] = np.minimum(wy[-overlap:], r[::-1])
        if left:
            wx[:overlap] = r
        if right:
            wx[-overlap:] = np.minimum(wx[-overlap:], r[::-1])
    return wy[:, None] * wx[None, :]


def blend(tiles, boxes: list[tuple[int, int]], height: int, width: int, overlap: int) -> np.ndarray:
    """Weighted average of (C, th, tw) tiles placed at `boxes` -> (C, height, width)."""
    c, th, tw = tiles[0].shape
    out = np.zeros((c, height, width), dtype=np.float32)
    total = np.zeros((height, width), dtype=np.float32)
    for (y, x), pred in zip(boxes, tiles, strict=True):
        weight = tile_weight(th, tw, overlap, top=y > 0, left=x > 0, bottom=y + th < height, right=x + tw < width)
        out[:, y : y + th, x : x + tw] += pred * weight
        total[y : y + th, x : x + tw] += weight
    return out / total


def untile(tiles, boxes: list[tuple[int, int]], height: int, width: int, overlap: int) -> np.ndarray:
    """Blend the tiles made by `split` and crop back to (C, height, width)."""
    th, tw = tiles[0].shape[-2:]
    padded_h, padded_w = max(y for y, _ in boxes) + th, max(x for _, x in boxes) + tw
    return blend(tiles, boxes, padded_h, padded_w, overlap)[:, :height, :width]
