"""Safety checks on a model or weights file before anything reads it: pickles and legacy full-model HDF5
files can run code when loaded, whatever their extension says, so the contents are sniffed."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import TLError

__all__ = ["PICKLE_SUFFIXES", "HDF5_MAGIC", "check_weights_file", "refuse_code", "file_head", "is_pickle",
           "pickle_error"]

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pth", ".pt", ".bin", ".joblib", ".ckpt")
H5_SUFFIXES = (".h5", ".hdf5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_weights_file(path: str | Path) -> None:
    """Refuse a weights file that is really a pickle or a legacy full model (both can hold code)."""
    refuse_code(Path(path), "pass a weights-only file (.weights.h5)")


def refuse_code(path: Path, advice: str) -> bytes:
    """Raise for a pickle or a legacy full-model .h5 (both run code when loaded); returns the file's first bytes."""
    head = file_head(path)
    if is_pickle(path, head):
        raise pickle_error(path)
    if (head.startswith(HDF5_MAGIC) or path.suffix.lower() in H5_SUFFIXES) and _h5_has_model(path):
        raise TLError(f"{path.name!r} is a legacy full-model .h5 file, which can hold code; {advice}")
    return head


def file_head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise TLError(f"cannot read {path.name!r} ({exc.strerror or exc})") from None


def pickle_error(path: Path) -> TLError:
    return TLError(f"{path.name!r} is a pickle-based file, and pickle files can run code when loaded; "
                   "give a .keras file exported by Transfer Lab or weights only (.weights.h5)")


def is_pickle(path: Path, head: bytes) -> bool:
    """Pickle by extension, by its protocol 2-5 header, or a zip holding one (PyTorch's format)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
        if any(n.lower().endswith((".pkl", ".pickle")) for n in names):
            return True
        if path.suffix.lower() == ".npz":
            return _npz_has_objects(path)
    if path.suffix.lower() == ".npy":
        return _npy_has_objects(path)
    return False


def _npy_has_objects(path: Path) -> bool:
    # Object arrays are stored as pickles; reading only the header tells.
    try:
        with open(path, "rb") as f:
            return _npy_header_has_objects(f)
    except (OSError, ValueError):
        return False


def _npz_has_objects(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as f:
                    if _npy_header_has_objects(f):
                        return True
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return False


def _npy_header_has_objects(f) -> bool:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _, _, dtype = read(f)
    return bool(dtype.hasobject)


def _h5_has_model(path: Path) -> bool:
    """Whether an HDF5 file holds a whole legacy Keras model (False when it is not readable HDF5)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except OSError:  # not HDF5: whoever reads it next says so
        return False
