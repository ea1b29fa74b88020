"""Hostile input to the image decoder: a corpus generated here, then property tests.

Every fixture is built by this file (hand-written chunks with correct CRCs, patched headers,
real encoder output cut or flipped), so the corpus documents exactly what each attack is.
The promise under test: any byte string gives an RGB uint8 array or an ImageDecodeError
with a reason, without allocating what a header claims. (No time limit per example: a timed check
fails by chance on a busy machine; the Hypothesis profiles are in tests/conftest.py.)
"""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import EpsImagePlugin, Image

from tlcore.data.images import MAX_PIXELS, ImageDecodeError, decode_image, load_image

ROOT = Path(__file__).resolve().parents[2]


# --- builders -------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width x height`` zeros: a few kB that would decode to gigabytes."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    rows_per_piece = max(1, (1 << 20) // len(row))
    body = []
    for start in range(0, height, rows_per_piece):
        body.append(z.compress(row * min(rows_per_piece, height - start)))
    body.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(body))
            + png_chunk(b"IEND", b""))


def png_raw(width: int, height: int, bit_depth: int, colour_type: int, pixels: bytes) -> bytes:
    """A PNG from raw big-endian pixel bytes (filter 0 on every row)."""
    stride = len(pixels) // height
    rows = b"".join(b"\x00" + pixels[i * stride:(i + 1) * stride] for i in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def png_declaring(width: int, height: int) -> bytes:
    """A real tiny PNG whose IHDR is patched to claim another size (CRC recomputed)."""
    data = bytearray(encode(Image.new("RGB", (4, 4), (200, 30, 30)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A hand-written uncompressed 8-bit grey TIFF claiming ``width x height`` with 16 bytes of data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, min(width * height, 2**32 - 1))]
    pixels = b"\x80" * 16
    ifd_offset = 8 + len(pixels)
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + pixels + ifd


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (4, 4), 1), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen descriptor
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), (1, 2, 3)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header is patched (14 bits per side, so at most 16384)."""
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = struct.unpack("<I", data[at + 1:at + 5])[0]
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[at + 1:at + 5] = struct.pack("<I", bits)
    return bytes(data)


def noisy(width=24, height=16, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def assert_rgb_or_reason(data: bytes, size=None):
    """The contract: an RGB uint8 array (of the requested size) or our error with a reason."""
    try:
        out = decode_image(data, size)
    except ImageDecodeError as exc:
        assert str(exc).strip()
        return None
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] >= 1 and out.shape[1] >= 1
    if size is not None:
        w, h = (size, size) if isinstance(size, int) else size
        assert out.shape[:2] == (h, w)
    assert out.shape[0] * out.shape[1] <= MAX_PIXELS
    return out


# --- the corpus: files that must be refused, each with its reason --------------------------------

FITS = b"".join(card.ljust(80).encode() for card in
                ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
                 "NAXIS1  =                    4", "NAXIS2  =                    4", "END"]).ljust(2880) + b"\x00" * 2880
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n"
       b"%%EndComments\n/inch {72 mul} def\n(%pipe%touch /tmp/owned) (w) file\nshowpage\n%%EOF\n")
DOS_EPS = b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIII", 30, len(EPS), 0, 0, 0, 0) + b"\xff\xff" + EPS
HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>nope</body></html>\n"

REFUSED = {
    "zero bytes": (b"", "^empty file$"),
    "plain text": (b"this is not a photo\n", "not an image"),
    "HTML page": (HTML, "HTML page"),
    "HTML after a BOM and blank lines": (b"\xef\xbb\xbf\n\n  <html><body>x</body></html>", "HTML page"),
    "EPS": (EPS, "^EPS files are not accepted; use JPEG, PNG"),
    "DOS EPS binary": (DOS_EPS, "^EPS files are not accepted"),
    "FITS": (FITS, "^FITS files are not accepted"),
    "PDF": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "^PDF files are not accepted"),
    "PSD": (b"8BPS\x00\x01" + b"\x00" * 40, "^PSD files are not accepted"),
    "HEIC": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "^HEIC files are not accepted"),
    "SVG": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>', "^SVG files"),
    "PPM": (b"P6\n2 2\n255\n" + b"\xff\x00\x00" * 4, "^PNM .* files are not accepted"),
    "random bytes": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
    "PNG signature only": (b"\x89PNG\r\n\x1a\n", "corrupt|truncated|not an image"),
    "JPEG markers only": (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "corrupt|truncated|not an image"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_its_reason(name):
    data, reason = REFUSED[name]
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data, 16)


@pytest.mark.parametrize("name", ["plain text", "HTML page", "EPS", "FITS"])
def test_the_name_does_not_matter_only_the_content(tmp_path, name):
    data, reason = REFUSED[name]
    path = tmp_path / "holiday.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=reason):
        load_image(path)


def test_eps_never_reaches_ghostscript(monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a) or Image.new("RGB", (4, 4)))
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    for data in (EPS, DOS_EPS):
        with pytest.raises(ImageDecodeError, match="EPS"):
            decode_image(data)
    assert calls == []
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # i.e. Pillow alone would have taken it


@pytest.mark.parametrize("fmt, reason", [
    ("TGA", "not an image"), ("PCX", "not an image"), ("IM", "not an image"), ("XBM", "not an image"),
    ("MSP", "not an image"), ("SPIDER", "not an image"), ("DIB", "not an image"),
    ("ICO", "^ICO files"), ("SGI", "^SGI files"), ("QOI", "^QOI files"), ("DDS", "^DDS files"),
    ("PDF", "^PDF files"), ("EPS", "^EPS files"), ("PPM", "^PNM"), ("ICNS", "^ICNS files"),
    ("JPEG2000", "^JPEG 2000 files"), ("AVIF", "^AVIF files"),
])
def test_formats_pillow_reads_but_the_allowlist_refuses(fmt, reason):
    img = Image.new("1" if fmt in ("XBM", "MSP") else "RGB", (16, 16))
    try:
        data = encode(img, fmt)
    except (OSError, KeyError, ValueError):
        pytest.skip(f"this Pillow cannot write {fmt}")
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


# --- bombs: a header that claims too many pixels fails before decoding ---------------------------

DECLARED = {
    "PNG 30000x30000 (patched IHDR)": lambda: png_declaring(30000, 30000),
    "PNG 9000x9000 (just over the cap)": lambda: png_declaring(9000, 9000),
    "TIFF 100000x100000": lambda: tiff_declaring(100_000, 100_000),
    "TIFF 9000x9000": lambda: tiff_declaring(9000, 9000),
    "GIF 65535x65535": lambda: gif_declaring(65535, 65535),
    "BMP 50000x50000": lambda: bmp_declaring(50_000, 50_000),
    "JPEG 65000x65000": lambda: jpeg_declaring(65000, 65000),
    "WebP 16384x16384": lambda: webp_declaring(16384, 16384),
}


@pytest.mark.parametrize("name", list(DECLARED))
def test_huge_declared_size_is_too_large(name):
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(DECLARED[name](), 16)


@pytest.mark.parametrize("name", list(DECLARED))
def test_our_cap_holds_even_when_pillows_limit_is_lifted(monkeypatch, name):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # what some libraries do on import
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(DECLARED[name](), 16)


@pytest.mark.parametrize("pillow_limit", ["default", None])
def test_real_png_bomb_is_refused(monkeypatch, pillow_limit):
    data = png_bomb(30000, 30000)  # fully valid: 900 megapixels of zeros
    assert len(data) < 200_000
    if pillow_limit is None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        assert Image.open(io.BytesIO(data)).size == (30000, 30000)  # Pillow alone would go on to decode it
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(data)


def test_pillow_bomb_warning_range_is_an_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: Pillow only warns
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(encode(noisy(40, 40), "PNG"))


def test_size_just_under_the_cap_is_not_refused_for_its_size():
    data = png_declaring(8000, 8000)  # 64 MP, at the cap: allowed, then the 4x4 data is too short
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, 16)
    assert "too large" not in str(info.value)


_MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[1])
    from PIL import Image
    from tlcore.data.images import ImageDecodeError, decode_image
    from tests.core.test_hostile_images import DECLARED, png_bomb
    Image.MAX_IMAGE_PIXELS = None  # only our own cap stands between a header and an allocation
    corpus = [png_bomb(30000, 30000), png_bomb(20000, 4000)] + [make() for make in DECLARED.values()]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reasons = []
    for data in corpus:
        try:
            decode_image(data, 16)
            reasons.append(None)
        except ImageDecodeError as exc:
            reasons.append(str(exc))
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"grown_mb": grown_kb / 1024, "reasons": reasons}))
""")


def test_bombs_do_not_allocate_what_they_declare():
    """In a fresh process (so the peak is ours): refusing every bomb grows the peak RSS by < 64 MB,
    where decoding the smallest of them would need several hundred."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(ROOT)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(r and "too large" in r for r in result["reasons"]), result["reasons"]
    assert result["grown_mb"] < 64, result


# --- broken real files: truncated and corrupt ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_truncated_files_are_refused(fmt, keep):
    data = encode(noisy(64, 48), fmt)
    cut = data[: max(1, int(len(data) * keep))]
    with pytest.raises(ImageDecodeError, match="truncated|corrupt|not an image"):
        decode_image(cut)


def test_png_with_a_bad_crc_is_refused():
    data = bytearray(encode(noisy(), "PNG"))
    data[29] ^= 0xFF  # the IHDR CRC
    with pytest.raises(ImageDecodeError, match="^corrupt or truncated image .*PNG"):
        decode_image(bytes(data))


def test_png_with_a_damaged_pixel_stream_is_refused():
    data = bytearray(encode(noisy(), "PNG"))
    idat = data.index(b"IDAT") + 4
    data[idat + 2:idat + 40] = b"\xff" * 38  # inside the deflate stream, CRC left stale
    with pytest.raises(ImageDecodeError, match="corrupt|truncated"):
        decode_image(bytes(data))


def test_reasons_are_one_short_phrase():
    for data in [encode(noisy(), "JPEG")[:300], png_declaring(30000, 30000), EPS, HTML, b"x"]:
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data)
        reason = str(info.value)
        assert "\n" not in reason and len(reason) <= 120 and "Traceback" not in reason, reason


# --- odd but valid, hand-made -------------------------------------------------------------------


def test_16_bit_rgb_png_keeps_its_colours():
    # 48-bit RGB: red 65535, green 32768, blue 0 -> about (255, 128, 0), never clipped to white.
    pixels = struct.pack(">HHH", 65535, 32768, 0) * 6
    out = decode_image(png_raw(3, 2, 16, 2, pixels))
    assert out.shape == (2, 3, 3)
    assert (np.abs(out.astype(int) - (255, 128, 0)) <= 1).all()


def test_16_bit_rgba_png_is_rescaled_and_blended_on_white():
    opaque_red, clear_blue, half_black = (65535, 0, 0, 65535), (0, 0, 65535, 0), (0, 0, 0, 32768)
    pixels = b"".join(struct.pack(">HHHH", *p) for p in (opaque_red, clear_blue, half_black))
    data = png_raw(3, 1, 16, 6, pixels)
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    out = decode_image(data).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert (np.abs(out[0, 2] - 127) <= 1).all()  # half-transparent black over white: mid-grey


def test_grey_png_with_a_transparent_value_is_blended_on_white():
    data = bytearray(png_raw(2, 1, 8, 0, b"\x00\x64"))  # black, then grey 100
    iend = data.index(b"IEND") - 4
    data[iend:iend] = png_chunk(b"tRNS", struct.pack(">H", 0))  # black is transparent
    out = decode_image(bytes(data))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [100, 100, 100]


def test_rgb_png_with_a_transparent_colour_is_blended_on_white():
    img = Image.new("RGB", (2, 1), (0, 0, 0))
    img.putpixel((1, 0), (10, 200, 10))
    out = decode_image(encode(img, "PNG", transparency=(0, 0, 0)))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 200, 10]


def test_mpo_phone_jpeg_is_read_as_jpeg():
    frames = [Image.new("RGB", (16, 12), (220, 20, 20)), Image.new("RGB", (16, 12), (20, 20, 220))]
    try:
        data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    except (OSError, KeyError):
        pytest.skip("this Pillow cannot write MPO")
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = decode_image(data)
    assert out.shape == (12, 16, 3) and out[6, 8, 0] > 180 and out[6, 8, 2] < 60  # the first frame


def test_broken_exif_does_not_lose_a_good_photo(monkeypatch):
    # Pillow copes with most malformed EXIF itself; when it does not, the pixels are still used.
    def fails(*args, **kwargs):
        raise SyntaxError("not a TIFF file (header b'MM\\x00*\\x00\\x00\\x00\\x08' not valid)")

    monkeypatch.setattr("tlcore.data.images.ImageOps.exif_transpose", fails)
    img = noisy()
    out = decode_image(encode(img, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(img))


# --- properties: any bytes, and real files with bytes flipped or cut ---------------------------------

SIZES = st.sampled_from([None, 8, (12, 5)])
PROPERTY = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(data=st.binary(max_size=4096), size=SIZES)
def test_any_bytes_give_rgb_or_our_error(data, size):
    assert_rgb_or_reason(data, size)


@PROPERTY
@given(prefix=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                               b"RIFF\x00\x00\x00\x00WEBPVP8L", b"RIFF\x00\x00\x00\x00WEBPVP8X"]),
       tail=st.binary(max_size=2048), size=SIZES)
def test_bytes_behind_a_real_signature_give_rgb_or_our_error(prefix, tail, size):
    assert_rgb_or_reason(prefix + tail, size)


def _seeds() -> dict[str, bytes]:
    img = noisy(20, 14)
    frames = [img, noisy(20, 14, seed=1)]
    seeds = {fmt: encode(img, fmt) for fmt in ["PNG", "JPEG", "GIF", "BMP", "TIFF"]}
    seeds["WEBP"] = encode(img, "WEBP", lossless=True)
    seeds["WEBP lossy"] = encode(img, "WEBP", quality=50)
    seeds["APNG"] = encode(img, "PNG", save_all=True, append_images=frames[1:])
    seeds["animated GIF"] = encode(img, "GIF", save_all=True, append_images=frames[1:])
    seeds["TIFF deflate"] = encode(img, "TIFF", compression="tiff_adobe_deflate")
    seeds["TIFF jpeg"] = encode(img, "TIFF", compression="jpeg")
    seeds["CMYK JPEG"] = encode(img.convert("CMYK"), "JPEG")
    seeds["16-bit PNG"] = encode(Image.fromarray((np.asarray(img)[..., 0].astype(np.uint16) * 257)), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds["rotated JPEG"] = encode(img, "JPEG", exif=exif.tobytes())
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@PROPERTY
@given(data=mutated(), size=SIZES)
def test_mutated_real_files_give_rgb_or_our_error(data, size):
    assert_rgb_or_reason(data, size)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_decodes(name):
    # The mutation test means something only if its seeds are themselves good images.
    out = assert_rgb_or_reason(SEEDS[name])
    assert out is not None and out.shape in [(14, 20, 3), (20, 14, 3)]
