"""Every input kind on purpose: decode -> (identity) -> encode gives back what came in."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from bench.reliability.images import decode, encode, png_header_only, scene
from service import imaging

MAX = 10_000_000


def roundtrip(data: bytes, fmt: str = "png") -> tuple[imaging.Decoded, Image.Image]:
    decoded = imaging.decode(data, MAX)
    return decoded, decode(imaging.encode(decoded.rgb, decoded.extras, fmt))


def test_rgb_png_roundtrip_is_lossless():
    rgb = scene(30, 40)
    decoded, out = roundtrip(encode(rgb))
    assert decoded.rgb.shape == (30, 40, 3) and decoded.rgb.dtype == np.float32
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), rgb)


def test_rgba_keeps_alpha_and_jpeg_flattens_it():
    rgba = np.dstack([scene(20, 20), np.linspace(0, 255, 400).reshape(20, 20).astype(np.uint8)])
    decoded, out = roundtrip(encode(rgba))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out), rgba)
    jpeg = decode(imaging.encode(decoded.rgb, decoded.extras, "jpeg"))
    assert jpeg.mode == "RGB"


def test_gray_and_gray_alpha_stay_gray():
    gray = scene(16, 24)[:, :, 0]
    _, out = roundtrip(encode(gray))
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), gray)
    la = Image.fromarray(np.dstack([gray, 255 - gray]))
    assert la.mode == "LA"
    _, out = roundtrip(encode(la))
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(la))
    _, webp = roundtrip(encode(la), "webp")  # WebP has no gray: RGBA, alpha kept
    assert webp.mode == "RGBA"


def test_palette_with_transparency_becomes_rgba():
    pal = Image.fromarray(scene(16, 16)).quantize(8)
    pal.info["transparency"] = 0
    data = encode(pal, transparency=0)
    decoded, out = roundtrip(data)
    assert out.mode == "RGBA"
    expected_alpha = np.where(np.asarray(pal) == 0, 0, 255)
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], expected_alpha)


def test_sixteen_bit_gray_stays_sixteen_bit():
    values = (np.linspace(0, 65535, 12 * 10).reshape(12, 10)).astype(np.uint16)
    data = encode(Image.fromarray(values))
    decoded, out = roundtrip(data)
    assert decoded.extras.bit_depth == 16 and decoded.extras.gray
    assert out.mode == "I;16"
    np.testing.assert_allclose(np.asarray(out).astype(np.int64), values.astype(np.int64), atol=1)
    assert decode(imaging.encode(decoded.rgb, decoded.extras, "jpeg")).mode == "L"  # 8-bit elsewhere


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.fromarray(scene(16, 16)).convert("CMYK")
    decoded, out = roundtrip(encode(cmyk, "JPEG"))
    assert out.mode == "RGB" and out.size == (16, 16)
    assert decoded.extras.icc_profile is None


def test_exif_orientation_is_applied():
    rgb = scene(20, 40)  # landscape pixels ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... stored rotated: "rotate 90 CW to display"
    decoded, out = roundtrip(encode(rgb, "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (20, 40)
    assert out.size == (20, 40)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded, out = roundtrip(buf.getvalue())
    assert decoded.extras.frames == 2
    assert np.asarray(out.convert("RGB")).mean() < 50


def test_icc_profile_is_kept():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _, out = roundtrip(encode(scene(8, 8), icc_profile=icc))
    assert out.info.get("icc_profile") == icc


@pytest.mark.parametrize("fmt", imaging.OUTPUT_FORMATS)
def test_every_output_format_decodes(fmt):
    decoded = imaging.decode(encode(scene(9, 11)), MAX)
    out = decode(imaging.encode(decoded.rgb, decoded.extras, fmt, quality=80))
    assert out.format == fmt.upper() and out.size == (11, 9)


def test_one_pixel_image():
    decoded, out = roundtrip(encode(np.array([[[1, 2, 3]]], np.uint8)))
    assert out.size == (1, 1)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", imaging.ImageError),
        (b"hello, I am text pretending to be a PNG", imaging.UnsupportedImage),
        (encode(scene(64, 64))[:200], imaging.ImageError),
        (encode(scene(64, 64), "JPEG")[:300], imaging.ImageError),
        (png_header_only(50_000, 50_000), imaging.ImageTooLarge),
        (png_header_only(4000, 3000), imaging.ImageTooLarge),  # over MAX, under Pillow's own limit
        (b"P6\n2 2\n255\n" + bytes(12), imaging.UnsupportedImage),  # PPM: a real image, not accepted
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "bomb", "too-many-pixels", "ppm"],
)
def test_bad_inputs_raise_the_right_error(data, error):
    with pytest.raises(error) as info:
        imaging.decode(data, MAX)
    assert type(info.value) is error
    assert str(info.value)


def test_bomb_is_refused_before_decoding():
    img = imaging.open_image(png_header_only(3000, 3000), MAX)  # within limit: header parsed, no pixels yet
    assert img.size == (3000, 3000)
    with pytest.raises(imaging.ImageTooLarge, match="limit"):
        imaging.open_image(png_header_only(3001, 3333), MAX)


def test_sniff_tells_images_from_other_bytes():
    assert imaging.sniff(encode(scene(4, 4))) == "PNG"
    assert imaging.sniff(encode(scene(4, 4), "JPEG")) == "JPEG"
    assert imaging.sniff(encode(scene(4, 4), "WEBP")) == "WEBP"
    assert imaging.sniff(b"%PDF-1.4") is None
