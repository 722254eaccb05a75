"""Early load shedding: refuse a restore from its headers when the queue could not take it.

The batcher admits tiles only after the body is read and the image header parsed. Before this,
under a flood every request that arrived while the queue had a free tile got its body read and
parsed (on the event loop) and was refused only then. The edge now reserves a lower bound of
each request's tiles from its Content-Length when the headers arrive and holds it until the
response ends, so at most a queue's worth of requests is ever past the headers.
"""

from dataclasses import dataclass

# The most bytes a pixel takes in an accepted upload: 16-bit RGBA stored uncompressed (PNG
# and TIFF can; compression only lowers it). So an upload of n bytes has at least n / 8 pixels.
MAX_BYTES_PER_PIXEL = 8


def tiles_at_least(content_length: int | None, tile_size: int) -> int:
    """A lower bound of the backbone tiles a `content_length`-byte upload needs (1 if unknown).

    A tile covers at most tile_size² pixels, so fewer tiles cannot cover the image.
    """
    if not content_length:
        return 1
    pixels = content_length // MAX_BYTES_PER_PIXEL
    return max(1, -(-pixels // (tile_size * tile_size)))


@dataclass
class EdgeQueue:
    """Tiles reserved by requests past the headers and not yet answered (one event loop, no lock)."""

    reserved: int = 0

    def why_full(self, in_flight: int, capacity: int, tiles: int) -> str | None:
        """Why `tiles` more cannot be taken, or None.

        `in_flight` (the batcher's admitted tiles) and `reserved` both count work the requests
        already let in will need, so the larger of the two is a lower bound of it. As in the
        batcher, a request larger than the capacity is let in when nothing else is.
        """
        load = max(in_flight, self.reserved)
        if load > 0 and load + tiles > capacity:
            return f"queue full ({load} tiles admitted or arriving, capacity {capacity})"
        return None

    def reserve(self, tiles: int) -> None:
        self.reserved += tiles

    def release(self, tiles: int) -> None:
        self.reserved -= tiles
