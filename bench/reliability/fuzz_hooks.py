"""Schemathesis hooks (SCHEMATHESIS_HOOKS): real images in most POST /restore bodies.

Random bytes for `image` are schema-valid but never an image, so without this every generated
restore ends in 415 and the success responses (image or JSON, and their headers) are never
checked against the schema.
"""

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _image(fmt: str, channels: int, height: int, width: int, seed: int) -> bytes:
    """Noise in a (height, width[, channels]) image: gray, RGB or RGBA by channel count."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = (
    _image("PNG", 3, 24, 32, 0),
    _image("JPEG", 3, 20, 20, 1),
    _image("PNG", 4, 16, 16, 2),
    _image("PNG", 1, 9, 30, 3),
)


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: object) -> st.SearchStrategy:
    """Swap a generated binary `image` for a real one (or keep it); any other part stays as generated.

    Only a value that already has the right type is swapped, so a body generated as negative
    data stays negative through its other fields.
    """
    if context.operation is None or context.operation.label != "POST /restore" or not isinstance(body, dict):
        return st.just(body)
    if not isinstance(body.get("image"), bytes | str):
        return st.just(body)
    return st.sampled_from([None, *IMAGES]).map(lambda image: body if image is None else {**body, "image": image})
