"""The one decoding path for every image: training, evaluation and prediction."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageDecodeError", "decode_image", "load_image"]

_BACKGROUND = (255, 255, 255)  # transparent pixels are blended on white, always


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; the message is the reason."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: rescale to 0..255 rather than clipping everything to white.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        # alpha_composite, as the documented TFLite example does, so both give the same pixels.
        background = Image.new("RGBA", img.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode image bytes to an RGB ``uint8`` array, optionally resized to ``size``.

    EXIF orientation is applied, every mode is converted to RGB the same way
    and animated files give their first frame. Raises
    :class:`ImageDecodeError` with the reason when the bytes are not a usable image.
    """
    if not data:
        raise ImageDecodeError("empty file")
    if isinstance(size, int):
        size = (size, size)
    try:
        with warnings.catch_warnings():
            # A decompression bomb is an error here, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if size is not None and img.format == "JPEG":
                    # Decode large JPEGs at a reduced scale (still >= 2x the target): much faster.
                    img.draft("RGB", (size[0] * 2, size[1] * 2))
                img.seek(0)
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                if size is not None and img.size != size:
                    img = img.resize(size, Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image file Pillow can read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageDecodeError("image is too large (possible decompression bomb)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image ({exc})") from None


def load_image(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read and decode the image at ``path`` (see :func:`decode_image`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, size)
