"""The one decoding path for every image: training, evaluation, prediction and export.

Files are identified by their content, never by their name. Only an allowlist
of formats is ever handed to Pillow (JPEG, PNG, GIF, BMP, WebP and TIFF), so
no other plugin parses hostile bytes and EPS never reaches Ghostscript. The
declared size is checked from the header before any pixel is decoded, and
every failure is an :class:`ImageDecodeError` whose message is the reason.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageDecodeError", "ALLOWED_FORMATS", "MAX_PIXELS", "decode_image", "load_image", "sniff_format"]

# Pillow's plugin names. Phone JPEGs carrying extra (depth, stereo) frames open through the JPEG
# plugin as format "MPO", which is therefore accepted too.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

# Explicit cap on width * height, independent of Image.MAX_IMAGE_PIXELS (other code may lift
# that to None). 64 MP keeps a decode under about 1 GB while admitting phone and DSLR photos.
MAX_PIXELS = 64_000_000

_BACKGROUND = (255, 255, 255)  # transparent pixels are blended on white, always
_USE = "use JPEG, PNG, GIF, BMP, WebP or TIFF"
_NOT_AN_IMAGE = "not an image file Pillow can read"

# Other formats recognised by their first bytes, so the reason can name them.
_MAGIC: list[tuple[bytes, str]] = [
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),  # DOS EPS binary header (holds a PostScript section)
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"#?RADIANCE", "HDR"),
    (b"#?RGBE", "HDR"),
    (b"gimp xcf", "XCF"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"icns", "ICNS"),
    (b"\x01\xda\x00", "SGI"),
]
_FITS = re.compile(rb"SIMPLE {2}=")
_PNM = re.compile(rb"P[1-7]\s")
# Signatures of the accepted formats: a file that starts like one but does not open is damaged.
_SIGNATURES = [(b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF")]
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; the message is the reason."""


def _not_accepted(name: str) -> str:
    return f"{name} files are not accepted; {_USE}"


def sniff_format(data: bytes) -> str | None:
    """Name a known non-allowlisted format from the first bytes of ``data``, else ``None``.

    Only formats with reliable signatures are named; ``None`` means "not one of those",
    not "an allowed image".
    """
    head = data[:1024]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] not in (b"", b"\x00", b"\x00\x00"):
        # An icon directory with at least one entry (a TGA header can start the same way, count 0).
        return "ICO" if head[2] == 1 else "CUR"
    if _FITS.match(head):
        return "FITS"
    if _PNM.match(head):
        return "PNM (PBM, PGM or PPM)"
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos or MP4/MOV video
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MP4/MOV video"
    if head[128:132] == b"DICM":
        return "DICOM"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (text.startswith(b"<") and b"<html" in text):
        return "HTML"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def _grey_to_rgb(arr: np.ndarray, lo: float, hi: float) -> Image.Image:
    """Map ``lo..hi`` linearly to 0..255 (rounded), then to three equal channels."""
    if hi <= lo:
        grey = np.zeros(arr.shape, np.uint8)
    else:
        scaled = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        grey = np.clip(np.rint(np.nan_to_num(scaled, nan=0.0)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Every mode to RGB the same way: alpha over white, high bit depths rescaled, never clipped."""
    mode = img.mode
    if mode.startswith("I;16"):
        # The full 16-bit range maps to 0..255, so mid-grey stays mid-grey (convert() would clip).
        return _grey_to_rgb(np.asarray(img), 0.0, 65535.0)
    if mode == "I":
        # 32-bit integers hold 8-bit, 16-bit or arbitrary data: use the smallest range that fits.
        arr = np.asarray(img)
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 255:
            return _grey_to_rgb(arr, 0.0, 255.0)
        if lo >= 0 and hi <= 65535:
            return _grey_to_rgb(arr, 0.0, 65535.0)
        return _grey_to_rgb(arr, float(lo), float(hi))
    if mode == "F":
        # Floats have no natural range: stretch what is there (NaN and inf count as black).
        arr = np.asarray(img)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return _grey_to_rgb(np.where(np.isfinite(arr), arr, lo), lo, hi)
    if mode in ("P", "L", "RGB", "1") and "transparency" in img.info:
        img = img.convert("RGBA")  # a transparent index or colour becomes alpha
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        # alpha_composite, as the documented TFLite example does, so both give the same pixels.
        background = Image.new("RGBA", img.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def _pixel_limit() -> int:
    pillow = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, int(pillow)) if pillow else MAX_PIXELS


def _too_large(width: int, height: int) -> str:
    return f"image is too large ({width}x{height} pixels; the limit is {_pixel_limit() / 1e6:g} megapixels)"


def _short(exc: BaseException) -> str:
    detail = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    return detail if len(detail) <= 80 else detail[:77] + "..."


def _decode(img: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels")
    if width * height > _pixel_limit():
        raise ImageDecodeError(_too_large(width, height))
    if size is not None and img.format in ("JPEG", "MPO"):
        # Decode large JPEGs at a reduced scale (still >= 2x the target): much faster. The larger
        # side is requested both ways since EXIF rotation may swap width and height afterwards.
        side = 2 * max(size)
        img.draft("RGB", (side, side))
    # A freshly opened file is at its first frame; later frames of an animation are never read.
    img.load()
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # noqa: BLE001 - broken EXIF is common in real photos; the pixels are still good
        pass
    img = _to_rgb(img)
    if size is not None and img.size != size:
        img = img.resize(size, Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def decode_image(data: bytes, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode image bytes to an RGB ``uint8`` array of shape ``(h, w, 3)``.

    ``size`` (an int for a square, or ``(width, height)``) resizes the result.
    The format is identified from the content: only JPEG, PNG, GIF, BMP, WebP
    and TIFF are accepted. EXIF orientation is applied, every mode is
    converted to RGB the same way (transparency blended on white, 16-bit and
    float rescaled rather than clipped) and animated files give their first
    frame. Raises :class:`ImageDecodeError` with the reason (one short phrase)
    for anything else: empty, another format, too many pixels (checked from the
    header, before decoding), truncated or corrupt.
    """
    if not data:
        raise ImageDecodeError("empty file")
    if isinstance(size, int):
        size = (size, size)
    # Name other formats first, before Pillow sees the bytes at all.
    other = sniff_format(data)
    if other == "HTML":
        raise ImageDecodeError("an HTML page, not an image (was a web page saved under an image name?)")
    if other:
        raise ImageDecodeError(_not_accepted(other))
    try:
        with warnings.catch_warnings():
            # Pillow's remarks on odd metadata would only be noise; a decompression bomb is an error.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                return _decode(img, size)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        for magic, name in _SIGNATURES + [(b"RIFF", "WebP")]:
            if data.startswith(magic) and (name != "WebP" or data[8:12] == b"WEBP"):
                raise ImageDecodeError(f"corrupt or truncated image (damaged {name} header)") from None
        raise ImageDecodeError(_NOT_AN_IMAGE) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError, MemoryError):
        raise ImageDecodeError("image is too large (possible decompression bomb)") from None
    except Exception as exc:  # noqa: BLE001 - hostile bytes reach Pillow's parsers, which raise many types
        raise ImageDecodeError(f"corrupt or truncated image ({_short(exc)})") from None


def load_image(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read and decode the image at ``path`` (see :func:`decode_image`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, size)
