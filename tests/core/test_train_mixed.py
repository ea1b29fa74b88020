"""Training on a folder that mixes good photos, odd-but-valid images and broken files.

One unreadable file never aborts a dataset: training succeeds on the rest, every broken file
is reported with its reason, and odd-but-valid images (CMYK, 16-bit, RGBA, rotated, animated)
are kept and decoded to their true colours.
"""
from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tlcore.training.frozen as frozen_mod
from tests.conftest import CLASS_COLOURS, make_image_folder
from tlcore.data.images import load_image
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import train

CLASSES = ("red", "blue")
N_GOOD = 8  # per class


def mean_colour_backbone(input_shape):
    """Features = mean RGB in 0..1: the colour classes are learnable, and it builds in milliseconds."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name="mean_colour")


def _noisy(colour, width, height, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array(colour) + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png16_rgb(arr8: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow cannot write one) holding ``arr8`` scaled to 16 bits."""
    h, w, _ = arr8.shape
    wide = (arr8.astype(">u2") * 257).tobytes()
    rows = b"".join(b"\x00" + wide[y * w * 6:(y + 1) * w * 6] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _save(img: Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    path.write_bytes(buf.getvalue())
    return path


def write_odd_but_valid(folder: Path, colour, other) -> list[Path]:
    """Five valid images in ``colour`` that a naive loader gets wrong or refuses."""
    base = Image.fromarray(_noisy(colour, 32, 24, seed=sum(colour)))
    rgba = np.dstack([np.asarray(base), np.full((24, 32), 255, np.uint8)])
    rgba[:2] = 0  # a fully transparent top border, colour included
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: must be turned upright
    frames = [base, Image.new("RGB", base.size, other), Image.new("RGB", base.size, other)]
    out = [
        _save(base.convert("CMYK"), folder / "cmyk.jpg", "JPEG", quality=95),
        folder / "deep.png",
        _save(Image.fromarray(rgba, "RGBA"), folder / "alpha.png", "PNG"),
        _save(base, folder / "sideways.jpg", "JPEG", exif=exif.tobytes(), quality=95),
        _save(frames[0], folder / "animated.gif", "GIF", save_all=True, append_images=frames[1:], duration=50),
    ]
    out[1].write_bytes(_png16_rgb(np.asarray(base)))
    return out


def write_broken(folder: Path) -> dict[Path, str]:
    """Broken files and a regex their reason must match."""
    photo = io.BytesIO()
    Image.fromarray(_noisy((128, 128, 128), 64, 64, seed=3)).save(photo, format="JPEG")
    bomb = bytearray(_png16_rgb(np.zeros((4, 4, 3), np.uint8)))
    bomb[16:24] = struct.pack(">II", 30000, 30000)  # the header claims 900 megapixels
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    files = {
        folder / "truncated.jpg": (photo.getvalue()[: len(photo.getvalue()) // 2], "truncated|corrupt"),
        folder / "notes.jpg": (b"remember to back up the photos\n", "not an image"),
        folder / "empty.png": (b"", "^empty file$"),
        folder / "drawing.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n", "^EPS files are not accepted"),
        folder / "page.jpg": (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "HTML page"),
        folder / "bomb.png": (bytes(bomb), "too large"),
    }
    for path, (data, _) in files.items():
        path.write_bytes(data)
    return {path: reason for path, (_, reason) in files.items()}


@pytest.fixture
def mixed_folder(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=N_GOOD, classes=CLASSES)
    odd, broken = {}, {}
    for name, other in zip(CLASSES, reversed(CLASSES)):
        odd[name] = write_odd_but_valid(root / name, CLASS_COLOURS[name], CLASS_COLOURS[other])
    broken.update(write_broken(root / "red"))
    broken.update(write_broken(root / "blue"))
    return root, odd, broken


def test_odd_but_valid_images_decode_to_their_class_colour(mixed_folder):
    _root, odd, _broken = mixed_folder
    for name, paths in odd.items():
        for path in paths:
            image = load_image(path)
            if path.name == "sideways.jpg":
                assert image.shape == (32, 24, 3)  # 32x24 stored with orientation 6: upright is 24 wide
            mean = load_image(path, 16)[2:].reshape(-1, 3).mean(axis=0)  # below the transparent border
            assert np.abs(mean - CLASS_COLOURS[name]).max() < 30, (path.name, mean)


def test_training_on_a_mixed_folder_keeps_the_good_and_reports_the_broken(mixed_folder, monkeypatch):
    root, odd, broken = mixed_folder
    monkeypatch.setattr(frozen_mod, "create_backbone", lambda name, weights=None, input_shape=None, pooling="avg":
                        mean_colour_backbone(input_shape or (224, 224, 3)))
    summary = train(root, TrainConfig(weights=None, epochs=2, batch_size=8, split=(0.5, 0.25, 0.25)))

    n_odd = sum(len(paths) for paths in odd.values())
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 2 * N_GOOD + n_odd
    assert len(summary["history"]) == 2

    reasons = {Path(s["path"]): s["reason"] for s in summary["skipped"]}
    assert set(reasons) == set(broken)  # every broken file, and nothing else
    for path, pattern in broken.items():
        assert re.search(pattern, reasons[path]), (path.name, reasons[path])
    kept_odd = {p for paths in odd.values() for p in paths}
    assert not kept_odd & set(reasons)
    assert "skipped_files" in [w["code"] for w in summary["warnings"]]


def test_the_real_default_backbone_trains_on_the_mixed_folder(mixed_folder):
    # Random weights make the features meaningless, but the path (decode, resize to 224, embed) is real.
    root, odd, broken = mixed_folder
    summary = train(root, TrainConfig(weights=None, epochs=1))
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 2 * N_GOOD + sum(map(len, odd.values()))
    assert {Path(s["path"]) for s in summary["skipped"]} == set(broken)
