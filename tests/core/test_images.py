"""The one decoding path: every mode and format to RGB uint8, orientation, resizing, errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_image
from tlcore.data.images import ImageDecodeError, decode_image, load_image

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def check_rgb(arr: np.ndarray, shape):
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape, 3)


def halves(width=40, height=20, left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: shows any rotation or flip."""
    arr = np.empty((height, width, 3), np.uint8)
    arr[:, : width // 2] = left
    arr[:, width // 2:] = right
    return Image.fromarray(arr)


def is_colour(pixel, colour, tol=40):
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)) <= tol))


# --- formats and orientation ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "GIF", "JPEG"])
def test_common_formats_decode_to_rgb(fmt):
    img = halves()
    kwargs = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    out = decode_image(encode(img, fmt, **kwargs))
    check_rgb(out, (20, 40))
    assert is_colour(out[10, 5], RED) and is_colour(out[10, 35], BLUE)
    if fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        np.testing.assert_array_equal(out, np.asarray(img))


@pytest.mark.parametrize(
    "orientation, shape, red_at, blue_at",
    [
        (1, (20, 40), (10, 5), (10, 35)),  # as stored
        (3, (20, 40), (10, 35), (10, 5)),  # rotated 180 degrees
        (6, (40, 20), (5, 10), (35, 10)),  # rotate 90 clockwise: the left half goes to the top
        (8, (40, 20), (35, 10), (5, 10)),  # rotate 90 anticlockwise: the left half goes to the bottom
    ],
)
def test_exif_orientation_is_applied(orientation, shape, red_at, blue_at):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(halves(), "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    check_rgb(out, shape)
    assert is_colour(out[red_at], RED), out[red_at]
    assert is_colour(out[blue_at], BLUE), out[blue_at]


def test_exif_orientation_is_applied_before_resizing():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves(400, 200), "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, 32)
    check_rgb(out, (32, 32))
    assert is_colour(out[4, 16], RED) and is_colour(out[28, 16], BLUE)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("size", [16, 224])
def test_resize_to_size(fmt, size):
    data = encode(halves(300, 120), fmt)
    out = decode_image(data, size)
    check_rgb(out, (size, size))
    assert is_colour(out[size // 2, 1], RED) and is_colour(out[size // 2, size - 2], BLUE)


def test_size_equal_to_the_image_changes_nothing():
    img = halves(24, 24)
    np.testing.assert_array_equal(decode_image(encode(img, "PNG"), 24), np.asarray(img))


def test_large_jpeg_decoded_at_reduced_scale_still_matches_a_full_decode():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((100, 100, 1))).astype(np.uint8)  # 800x800 blocks
    data = encode(Image.fromarray(smooth), "JPEG", quality=95)
    fast = decode_image(data, 64).astype(int)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(fast - full).mean() < 4


def test_output_is_an_independent_writable_array():
    out = decode_image(encode(halves(), "PNG"))
    assert out.flags.writeable and out.flags.c_contiguous
    out[:] = 0  # must not raise


# --- modes ---------------------------------------------------------------------------------------


def test_rgba_is_blended_on_white():
    arr = np.zeros((4, 6, 4), np.uint8)
    arr[:, :2] = (255, 0, 0, 255)  # opaque red
    arr[:, 2:4] = (255, 0, 0, 128)  # half-transparent red
    arr[:, 4:] = (0, 0, 255, 0)  # fully transparent blue: the colour must not leak
    out = decode_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    check_rgb(out, (4, 6))
    out = out.astype(int)
    assert (out[:, :2] == (255, 0, 0)).all()
    assert (out[:, 2:4, 0] == 255).all() and (np.abs(out[:, 2:4, 1:] - 127) <= 1).all()
    assert (out[:, 4:] == 255).all()


def test_palette_with_transparency_is_blended_on_white():
    img = Image.new("P", (6, 4), 0)
    img.putpalette([0, 0, 0] + [10, 200, 10] + [0, 0, 0] * 254)  # index 0 black, 1 green
    img.paste(1, (0, 0, 3, 4))
    data = encode(img, "PNG", transparency=0)  # black is transparent
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data)
    check_rgb(out, (4, 6))
    assert (out[:, :3] == (10, 200, 10)).all()
    assert (out[:, 3:] == 255).all()


def test_palette_gif_with_transparency():
    img = Image.new("P", (6, 4), 0)
    img.putpalette([0, 0, 0] + [10, 200, 10] + [0, 0, 0] * 254)
    img.paste(1, (0, 0, 3, 4))
    out = decode_image(encode(img, "GIF", transparency=0))
    assert (out[:, :3] == (10, 200, 10)).all() and (out[:, 3:] == 255).all()


def test_palette_without_transparency():
    img = halves().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = decode_image(encode(img, "PNG"))
    assert is_colour(out[10, 5], RED, 10) and is_colour(out[10, 35], BLUE, 10)


def test_la_grey_with_alpha():
    arr = np.zeros((4, 6, 2), np.uint8)
    arr[:, :3] = (100, 255)  # opaque grey
    arr[:, 3:] = (0, 0)  # transparent black
    out = decode_image(encode(Image.fromarray(arr, "LA"), "PNG"))
    check_rgb(out, (4, 6))
    assert (out[:, :3] == 100).all() and (out[:, 3:] == 255).all()


def test_grayscale_l_gives_equal_channels():
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    out = decode_image(encode(Image.fromarray(grey, "L"), "PNG"))
    check_rgb(out, grey.shape)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_rescaled_not_clipped(fmt):
    values = np.array([[0, 256, 32768, 65535]], np.uint16).repeat(3, axis=0)
    data = encode(Image.fromarray(values), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    check_rgb(out, values.shape)
    out = out.astype(int)
    assert (out[:, 0] == 0).all()
    assert (out[:, 1] <= 2).all()
    assert (np.abs(out[:, 2] - 128) <= 1).all()  # mid-grey stays mid-grey (clipping would give 255)
    assert (out[:, 3] == 255).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_big_endian_16_bit_grey():
    values = np.array([[0, 32768, 65535]], ">u2")
    img = Image.frombytes("I;16B", (3, 1), values.tobytes())
    try:
        data = encode(img, "TIFF")
    except (OSError, ValueError, KeyError):
        pytest.skip("this Pillow cannot write big-endian 16-bit TIFF")
    out = decode_image(data).astype(int)
    assert abs(out[0, 1, 0] - 128) <= 1 and out[0, 0, 0] == 0 and out[0, 2, 0] == 255


def test_float_image_is_stretched_to_full_range():
    values = np.linspace(-1.0, 3.0, 20, dtype=np.float32).reshape(4, 5)
    out = decode_image(encode(Image.fromarray(values, "F"), "TIFF")).astype(int)
    assert out.min() == 0 and out.max() >= 254
    assert (np.diff(out[..., 0].ravel()) >= 0).all()  # monotone


def test_one_bit_image():
    bits = np.zeros((8, 8), bool)
    bits[::2] = True
    img = Image.fromarray(bits).convert("1")
    out = decode_image(encode(img, "PNG"))
    check_rgb(out, (8, 8))
    assert (out[::2] == 255).all() and (out[1::2] == 0).all()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    img = Image.new("CMYK", (10, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    out = decode_image(encode(img, fmt))
    check_rgb(out, (8, 10))
    assert is_colour(out[4, 5], (255, 0, 0), 10)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_file_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (12, 10), c) for c in (RED, BLUE, (20, 200, 20))]
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = decode_image(data)
    check_rgb(out, (10, 12))
    assert is_colour(out[5, 6], RED, 12)


# --- errors ----------------------------------------------------------------------------------------


def test_empty_bytes():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_text_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_image(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg(keep):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(data[: int(len(data) * keep)])


def test_corrupt_png_body():
    data = bytearray(encode(halves(), "PNG"))
    data[60:120] = b"\x00" * 60  # inside the compressed pixel data
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bytes(data))
    assert str(info.value)  # the reason is given


def test_decompression_bomb_is_an_error(monkeypatch):
    data = encode(halves(40, 40), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: warning range, made an error
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # beyond twice the limit: Pillow's own error
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(data)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        load_image(tmp_path / "absent.png")


def test_load_image_reads_a_written_file(tmp_path):
    path = write_image(tmp_path / "a.png", RED, size=20)
    out = load_image(path, 8)
    check_rgb(out, (8, 8))
    assert is_colour(out.reshape(-1, 3).mean(axis=0), RED, 25)
    assert np.array_equal(load_image(str(path)), np.asarray(Image.open(path).convert("RGB")))


# --- more modes (TIFF carries most of them) ------------------------------------------------------


def test_ycbcr_tiff():
    img = Image.new("YCbCr", (6, 4), (81, 90, 240))  # red in YCbCr
    data = encode(img, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert is_colour(decode_image(data)[2, 3], (255, 0, 0), 25)


def test_lab_tiff():
    from PIL import ImageCms

    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    img = ImageCms.applyTransform(Image.new("RGB", (6, 4), RED), to_lab)
    data = encode(img, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    assert is_colour(decode_image(data)[2, 3], RED, 25)


def test_palette_with_alpha_tiff_is_blended_on_white():
    img = Image.new("PA", (6, 4), (1, 255))
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    img.paste((1, 0), (3, 0, 6, 4))  # right half transparent
    data = encode(img, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "PA"
    out = decode_image(data)
    assert (out[:, :3] == (10, 200, 10)).all() and (out[:, 3:] == 255).all()


@pytest.mark.parametrize("values, expected", [
    ([0, 100, 255], [0, 100, 255]),  # 8-bit data in a 32-bit image: kept as it is
    ([0, 32768, 65535], [0, 128, 255]),  # 16-bit data: the 16-bit scale, like I;16
    ([-1000, 0, 1000], [0, 128, 255]),  # anything else: stretched, never clipped
])
def test_32_bit_integer_grey_uses_the_range_it_needs(values, expected):
    img = Image.fromarray(np.array([values], np.int32), "I")
    out = decode_image(encode(img, "TIFF")).astype(int)
    assert (np.abs(out[0, :, 0] - expected) <= 1).all(), out[0, :, 0]
    assert (out[..., 0] == out[..., 2]).all()


def test_float_image_with_nan_and_infinity():
    values = np.array([[0.0, np.nan, 0.5, np.inf, 1.0, -np.inf]], np.float32)
    out = decode_image(encode(Image.fromarray(values, "F"), "TIFF"))[0, :, 0].astype(int)
    assert out.tolist()[0] == 0 and abs(out[2] - 128) <= 1 and out[4] == 255
    assert out[1] == out[3] == out[5] == 0  # not finite: black, and the finite range is kept


def test_large_non_jpeg_is_resized_to_the_requested_size():
    out = decode_image(encode(halves(3000, 1000), "PNG"), (48, 16))
    check_rgb(out, (16, 48))
    assert is_colour(out[8, 2], RED) and is_colour(out[8, 45], BLUE)


# --- content, not the name -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, name", [("PNG", "photo.jpg"), ("JPEG", "photo.png"), ("WEBP", "photo.gif"),
                                       ("TIFF", "photo"), ("BMP", "photo.txt")])
def test_format_comes_from_the_content_not_the_name(tmp_path, fmt, name):
    path = tmp_path / name
    path.write_bytes(encode(halves(), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    out = load_image(path)
    check_rgb(out, (20, 40))
    assert is_colour(out[10, 5], RED) and is_colour(out[10, 35], BLUE)
