"""Bytes <-> float arrays, with every input kind handled on purpose.

Decoding: the header is read and the pixel count checked *before* any pixel is decoded
(decompression bombs -> `ImageTooLarge`); EXIF orientation is applied to the pixels;
alpha, grayscale and 16-bit depth are remembered in `Extras` and restored on encoding;
the ICC profile is kept when it still describes the output. Policy decisions:

- Accepted inputs: PNG, JPEG (incl. MPO), WebP, GIF, BMP, TIFF. Anything else -> 415.
- Animated GIF/WebP/PNG: the first frame is restored; the others are dropped.
- Palette images become RGB (RGBA when they have transparency); output is RGB(A).
- CMYK (and other non-RGB colour spaces) are converted to RGB; a CMYK ICC profile is dropped.
- 16-bit grayscale (I;16, I, F) stays 16-bit in PNG output. 16-bit *RGB* PNGs are
  reduced to 8 bits by Pillow at decode time, so they come back as 8-bit.
- JPEG output has no alpha: transparent pixels are flattened onto white.
- Metadata other than the ICC profile (EXIF, GPS, text chunks) is not copied.
"""

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)
Image.init()  # register every plugin now, so `formats=INPUT_FORMATS` can name them all

INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG also opens MPO
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageError(ValueError):
    """An upload that cannot be restored; `status` and `code` map it to an HTTP error."""

    status = 422
    code = "bad_image"


class UnsupportedImage(ImageError):
    status = 415
    code = "unsupported_media_type"


class ImageTooLarge(ImageError):
    status = 413
    code = "too_large"


@dataclass(frozen=True)
class Extras:
    """What the restored RGB needs to look like the input again."""

    alpha: np.ndarray | None = None  # (H, W) float32 0..1
    gray: bool = False
    bit_depth: int = 8  # 8 or 16
    icc_profile: bytes | None = None
    source_format: str = "PNG"
    frames: int = 1


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # (H, W, 3) float32 0..1
    extras: Extras

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


def sniff(data: bytes) -> str | None:
    """Format by magic number, for telling 'corrupt image' (422) from 'not an image' (415)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only and refuse images over `max_pixels` before decoding them."""
    if not data:
        raise ImageError("the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has too many pixels (limit {max_pixels}): {exc}") from exc
    except UnidentifiedImageError as exc:
        fmt = sniff(data)
        if fmt is None:
            raise UnsupportedImage(f"not a supported image; send one of {', '.join(INPUT_FORMATS)}") from exc
        raise ImageError(f"corrupt or truncated {fmt} file") from exc
    except Exception as exc:  # any parser failure on untrusted bytes is a bad upload
        raise ImageError(f"corrupt image header: {exc}") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return img


def _exif_transpose(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception as exc:  # broken EXIF must not lose the photo
        log.warning("ignoring unreadable EXIF orientation: %s", exc)
        return img


def _to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    """-> (rgb (H, W, 3) float32, alpha (H, W) | None, gray, bit_depth)."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.float32)
        values = values / 65535.0 if mode != "F" else values
        gray = np.clip(values, 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2), None, True, 16
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("1", "L"):
        img = img.convert("L")
    elif mode in ("La", "LA"):
        img = img.convert("LA")
    elif mode in ("RGBa", "RGBA"):
        img = img.convert("RGBA")
    elif mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    values = np.asarray(img).astype(np.float32) / 255.0
    if img.mode == "L":
        return np.repeat(values[:, :, None], 3, axis=2), None, True, 8
    if img.mode == "LA":
        return np.repeat(values[:, :, :1], 3, axis=2), values[:, :, 1], True, 8
    if img.mode == "RGBA":
        return np.ascontiguousarray(values[:, :, :3]), values[:, :, 3], False, 8
    return values, None, False, 8


def decode(data: bytes, max_pixels: int) -> Decoded:
    """Upload bytes -> float32 RGB 0..1 plus what's needed to encode the result faithfully."""
    img = open_image(data, max_pixels)
    frames = getattr(img, "n_frames", 1)
    icc = img.info.get("icc_profile")
    fmt = img.format or "?"
    source_mode = img.mode
    try:
        img.load()
        img = _exif_transpose(img)
        rgb, alpha, gray, bit_depth = _to_arrays(img)
    except ImageError:
        raise
    except Exception as exc:  # truncated data, bad chunks, decoder errors
        raise ImageError(f"corrupt or truncated {fmt} file: {exc}") from exc
    if source_mode == "CMYK":
        icc = None
    return Decoded(rgb, Extras(alpha, gray, bit_depth, icc or None, fmt, frames))


def _icc_space(profile: bytes) -> bytes:
    """Colour space signature of an ICC profile: b'RGB ', b'GRAY', b'CMYK', ..."""
    return profile[16:20] if len(profile) >= 20 else b""


def encode(rgb: np.ndarray, extras: Extras, fmt: str = "png", quality: int = 90) -> bytes:
    """(H, W, 3) float 0..1 -> image bytes in `fmt`, restoring gray/alpha/16-bit/ICC from `extras`."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {OUTPUT_FORMATS}")
    rgb = np.clip(rgb, 0.0, 1.0)
    alpha = extras.alpha
    if fmt == "jpeg" and alpha is not None:
        rgb = rgb * alpha[:, :, None] + (1.0 - alpha[:, :, None])  # flatten onto white
        alpha = None
    gray = extras.gray and fmt != "webp"  # WebP stores RGB(A) only
    if gray:
        luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W), as PIL's "L"
        if extras.bit_depth == 16 and fmt == "png" and alpha is None:
            img = Image.fromarray(np.round(luma * 65535.0).astype(np.uint16))  # mode I;16
        elif alpha is None:
            img = Image.fromarray(_to_uint8(luma))  # L
        else:
            img = Image.fromarray(_to_uint8(np.stack([luma, alpha], axis=2)))  # LA
    else:
        pixels = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
        img = Image.fromarray(_to_uint8(pixels))  # RGB or RGBA
    options: dict = {}
    icc = extras.icc_profile
    if icc and _icc_space(icc) == (b"GRAY" if gray else b"RGB "):
        options["icc_profile"] = icc
    if fmt == "png":
        options["compress_level"] = 4  # ~zlib speed/size sweet spot for photos
    else:
        options["quality"] = int(quality)
    buf = io.BytesIO()
    img.save(buf, format=fmt.upper(), **options)
    return buf.getvalue()


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
