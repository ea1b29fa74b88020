"""Read a legacy-format PyTorch ``state_dict`` file with NumPy only.

PyTorch's legacy serialisation (``torch.save(..., _use_new_zipfile_serialization=False)``)
is a sequence of pickles followed by raw storage bytes. General pickle
loading can run arbitrary code, so this reader admits only the handful of
globals a plain tensor dictionary needs and rebuilds every tensor from its
storage, offset, shape and stride (several tensors in real files are stored
with non-contiguous strides).
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from ..io.errors import TLError

__all__ = ["load_torch_state_dict"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only carries a dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __setstate__(self, state):
        # A BUILD opcode on this shared stand-in would change it for every later load.
        raise pickle.UnpicklingError(f"refusing to modify torch.{self.name}")


class _TensorRef:
    """A tensor awaiting its storage bytes (they come after the main pickle)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage = storage
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, *rest):
    return _TensorRef(storage, offset, shape, stride)


def _rebuild_tensor(storage, offset, shape, stride):
    return _TensorRef(storage, offset, shape, stride)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Storage:
    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


class _StrictUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage] | None = None):
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _strict_load(stream, storages=None):
    return _StrictUnpickler(stream, storages).load()


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as ``{name: numpy array}``.

    Raises :class:`TLError` with one sentence when the file is not such a
    file or asks for anything beyond plain tensors.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLError(f"cannot read weights file {str(path)!r}: {exc.strerror or exc}") from exc
    if data[:2] == b"PK":
        raise TLError(
            f"{str(path)!r} is a zip-format PyTorch file; only the legacy format is supported"
        )
    stream = io.BytesIO(data)
    try:
        magic = _strict_load(stream)
        if magic != _MAGIC_NUMBER:
            raise pickle.UnpicklingError("not a legacy PyTorch file (bad magic number)")
        _strict_load(stream)  # protocol version
        sys_info = _strict_load(stream)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise pickle.UnpicklingError("big-endian files are not supported")
        storages: dict[str, _Storage] = {}
        state = _strict_load(stream, storages)
        keys = _strict_load(stream)
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", stream.read(8))
            nbytes = numel * storage.dtype.itemsize
            raw = stream.read(nbytes)
            if len(raw) != nbytes:
                raise pickle.UnpicklingError("file is truncated")
            storage.array = np.frombuffer(raw, dtype=storage.dtype)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error, TypeError) as exc:
        raise TLError(f"{str(path)!r} is not a plain PyTorch weights file: {exc}") from exc
    if not isinstance(state, dict):
        raise TLError(f"{str(path)!r} does not hold a dictionary of tensors")
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        arr = getattr(ref.storage, "array", None)
        if arr is None:
            raise TLError(f"{str(path)!r}: tensor {name!r} has no storage data")
        if len(ref.shape) != len(ref.stride):
            raise TLError(f"{str(path)!r}: tensor {name!r} has {len(ref.shape)} sizes but {len(ref.stride)} strides")
        itemsize = arr.itemsize
        # as_strided reads exactly the elements the stride describes; bounds are checked first
        # so a hostile file cannot make it read outside the storage.
        last = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride) if s > 0)
        if ref.shape and min(ref.shape) == 0:
            out[name] = np.zeros(ref.shape, arr.dtype)
            continue
        if ref.offset < 0 or last >= arr.size or any(v < 0 for v in ref.stride + ref.shape):
            raise TLError(f"{str(path)!r}: tensor {name!r} lies outside its storage")
        view = np.lib.stride_tricks.as_strided(
            arr[ref.offset:],
            shape=ref.shape,
            strides=tuple(st * itemsize for st in ref.stride),
            writeable=False,
        )
        out[name] = view.copy()  # C order; unlike ascontiguousarray, keeps 0-d tensors 0-d
    return out
