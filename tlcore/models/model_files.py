"""Model files from users: read numbers, never run code.

A model file can carry code: a pickle runs whatever its author wants as it
is unpickled (PyTorch ``.pt``/``.pth``, ``.pkl``, ``.joblib``...), a legacy
full-model ``.h5`` or a ``.keras`` holding a ``Lambda`` layer or a custom
class rebuilds Python objects from the file. So :func:`load_model_file`
accepts only:

* a run directory or a ``.tflite`` file (as before);
* a ``.onnx`` file this server exported (:mod:`tlcore.models.onnx_model` says why no other);
* a ``.keras`` archive whose ``config.json`` names nothing but Keras's own
  layers and Transfer Lab's registered ones (checked as JSON, before Keras
  sees the file). When it holds ``tlcore.json`` (Transfer Lab exports do),
  the architecture is built by Transfer Lab from that config and only the
  weights are read from the archive; otherwise Keras loads it in safe mode.

Everything else is refused with one sentence saying why, whatever its
extension pretends: contents are sniffed (pickle header, PyTorch zip, HDF5).
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .inference import traced_inference
from ..io.errors import TLError
from ..io.model_safety import HDF5_MAGIC, refuse_code

__all__ = ["KerasFileModel", "load_model_file", "scan_keras_config", "ACCEPTED_KINDS"]

ACCEPTED_KINDS = ("a run directory, a .keras file exported by Transfer Lab, a .tflite file with labels.txt beside it, "
                  "or a .onnx file this server exported")

# Caps for a .keras archive: real ones hold three or four entries, and the
# biggest backbones here are well under 1 GiB of weights.
_MAX_ENTRIES = 1000
_MAX_TOTAL_BYTES = 2 << 30
_MAX_JSON_BYTES = 32 << 20
_MAX_DEPTH = 200

# Layers that carry Python code (bytecode or a TF op name) in their config.
_CODE_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"}
# Keras's own markers for values inside a config (tensors, arrays, slices): data, not classes.
_VALUE_MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__typespec__", "__slice__",
                  "__ellipsis__"}


@dataclass
class KerasFileModel:
    """A ``.keras`` model without Transfer Lab metadata, loaded in safe mode; same prediction API as a run."""

    model: object
    classes: list[str]
    input_size: int
    path: Path
    config: dict = field(default_factory=dict)
    _inference: Callable | None = field(default=None, init=False, repr=False, compare=False)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of RGB pixels 0..255, shape ``(n, size, size, 3)``."""
        if self._inference is None:
            self._inference = traced_inference(self.model)
        return self._inference(images)

    def predict_files(self, paths: Sequence[str], batch_size: int = 16, on_progress=None):
        """Probabilities for each decodable file; returns ``(probs, kept indices, skipped)``; ``on_progress(done,
        total)`` hears each batch."""
        from .run import predict_image_files

        return predict_image_files(self.predict_batch, self.input_size, len(self.classes), paths, batch_size,
                                   on_progress)


def load_model_file(path: str | Path):
    """Load a model a user gives: run directory, ``.tflite`` or safe ``.keras``; refuse anything that can hold code.

    Returns a :class:`~tlcore.models.run.RunModel` (run directory, or a ``.keras``
    with Transfer Lab metadata), a :class:`~tlcore.models.tflite_model.TFLiteModel`,
    an :class:`~tlcore.models.onnx_model.OnnxModel` or a :class:`KerasFileModel`; all share ``classes``, ``input_size``,
    ``predict_batch`` and ``predict_files``. Raises :class:`TLError` with one
    sentence for a refused, damaged or mismatched file; nothing the caller
    already holds is changed.
    """
    path = Path(path)
    if path.is_dir():
        from .run import load_run

        return load_run(path)
    if not path.is_file():
        raise TLError(f"model file {str(path)!r} does not exist; give {ACCEPTED_KINDS}")
    _refuse_code_formats(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from .tflite_model import load_tflite

        return load_tflite(path)
    if suffix == ".onnx":
        from .onnx_model import load_onnx

        return load_onnx(path)
    if suffix == ".keras":
        return _load_keras(path)
    if suffix in (".npy", ".npz"):
        raise TLError(f"{path.name!r} holds NumPy arrays, not a model; give {ACCEPTED_KINDS}")
    raise TLError(f"{path.name!r} is not a model file Transfer Lab can load; give {ACCEPTED_KINDS}")


def _refuse_code_formats(path: Path) -> None:
    """Raise for a pickle or any HDF5 file (full model or weights only); return for everything else."""
    head = refuse_code(path, "export a .keras from Transfer Lab or pass weights only")
    if head.startswith(HDF5_MAGIC):
        raise TLError(f"{path.name!r} holds weights only, with no architecture or class names; "
                      "use it as --weights for training, or give " + ACCEPTED_KINDS)


# .keras --------------------------------------------------------------------------------------------

def _open_keras(path: Path) -> zipfile.ZipFile:
    """The archive, after checks that reading its entries stays bounded."""
    if not zipfile.is_zipfile(path):
        raise TLError(f"{path.name!r} is not a .keras archive (a .keras file is a zip)")
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise TLError(f"{path.name!r} is a damaged .keras archive ({exc})") from None
    names = [i.filename for i in infos]
    problem = None
    if len(infos) > _MAX_ENTRIES:
        problem = f"{len(infos)} entries"
    elif sum(i.file_size for i in infos) > _MAX_TOTAL_BYTES:
        problem = f"{sum(i.file_size for i in infos)} bytes once unpacked"
    elif len(set(names)) != len(names):
        # Two entries of one name: what is checked might not be what Keras reads.
        problem = "duplicate entries"
    elif any(n.startswith(("/", "\\")) or ".." in Path(n).parts for n in names):
        problem = "entries outside the archive"
    elif "config.json" not in names:
        problem = "no config.json"
    if problem:
        archive.close()
        raise TLError(f"{path.name!r} is not a .keras archive Transfer Lab accepts ({problem})")
    return archive


def _read_json(archive: zipfile.ZipFile, name: str, path: Path):
    info = archive.getinfo(name)
    if info.file_size > _MAX_JSON_BYTES:
        raise TLError(f"{path.name!r} has a {name} of {info.file_size} bytes, too large to be a model description")
    try:
        return json.loads(archive.read(name).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise TLError(f"{path.name!r} has a damaged {name} ({' '.join(str(exc).split())[:120]})") from None


# Where Transfer Lab's registered classes lived before the core was split into layers: files saved then name them.
_FORMER_MODULES = {"Standardize": "tlcore.model", "Preprocess": "tlcore.preprocessing"}


def _allowed_custom() -> dict[str, set[str]]:
    """Transfer Lab's own registered Keras classes: registered name -> the modules a file may name for it."""
    from ..backbones.preprocessing import Preprocess
    from .classifier import Standardize

    return {f"tlcore>{cls.__name__}": {cls.__module__, _FORMER_MODULES[cls.__name__]}
            for cls in (Standardize, Preprocess)}


def scan_keras_config(config, source: str = "config.json") -> None:
    """Refuse a Keras config naming code or classes from outside Keras and Transfer Lab.

    Walks the JSON (never deserialised) and raises :class:`TLError` naming
    the first offending layer: a ``Lambda``-type layer, or an object whose
    ``module`` is not ``keras``/``keras.*`` (Transfer Lab's own registered
    layers excepted).
    """
    allowed = _allowed_custom()

    def bad(obj, layer) -> str | None:
        name = obj.get("class_name")
        if not isinstance(name, str):
            return "an object with a malformed class name"
        where = f"its layer {layer!r}" if layer else "the model"
        if name in _CODE_CLASSES:
            return f"{where} is a {name} layer, which carries Python code"
        if name in _VALUE_MARKERS:
            return None
        module, registered = obj.get("module"), obj.get("registered_name")
        if registered in allowed and module in allowed[registered]:
            return None
        if not isinstance(module, str) or not (module == "keras" or module.startswith("keras.")):
            return f"{where} uses the custom object {name!r} from module {module!r}"
        if registered not in (None, name, "Functional", "function"):
            return f"{where} uses the custom object {registered!r}"
        return None

    def walk(obj, layer, depth):
        if depth > _MAX_DEPTH:
            raise TLError(f"{source!r} nests deeper than any model Transfer Lab accepts")
        if isinstance(obj, dict):
            if "class_name" in obj:
                inner = obj.get("config")
                # Layers (and models) have a name and a trainable flag; initializers and dtypes do not.
                if isinstance(inner, dict) and "trainable" in inner and isinstance(inner.get("name"), str):
                    layer = inner["name"]
                reason = bad(obj, layer)
                if reason:
                    raise TLError(f"{source!r} is refused because {reason}; "
                                  "Transfer Lab loads only Keras's own layers and its own")
            for value in obj.values():
                walk(value, layer, depth + 1)
        elif isinstance(obj, list):
            for value in obj:
                walk(value, layer, depth + 1)

    walk(config, None, 0)


def _load_keras(path: Path):
    with _open_keras(path) as archive:
        scan_keras_config(_read_json(archive, "config.json", path), path.name)
        names = set(archive.namelist())
        if "tlcore.json" in names:
            return _load_with_metadata(path, archive, _read_json(archive, "tlcore.json", path))
        inner_labels = None
        if "labels.txt" in names:
            if archive.getinfo("labels.txt").file_size > _MAX_JSON_BYTES:
                raise TLError(f"{path.name!r} has a labels.txt too large to be a list of class names")
            inner_labels = archive.read("labels.txt").decode("utf-8", "replace")
    return _load_plain_keras(path, inner_labels)


def _check_metadata(meta, path: Path) -> None:
    """Bound what a file can make Transfer Lab build (a huge input size would exhaust memory)."""
    where = f"{path.name!r} has a damaged tlcore.json"
    if not isinstance(meta, dict):
        raise TLError(f"{where} (not a JSON object)")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 2 <= len(classes) <= 10000 or not all(
            isinstance(c, str) and c for c in classes):
        raise TLError(f"{where} (classes must be a list of 2 to 10000 names)")
    size = meta.get("input_size")
    if size is not None and (not isinstance(size, int) or not 16 <= size <= 1024):
        raise TLError(f"{where} (input_size {size!r} is not between 16 and 1024)")


def _load_with_metadata(path: Path, archive: zipfile.ZipFile, meta):
    from .run import build_run_model

    _check_metadata(meta, path)
    if "model.weights.h5" not in archive.namelist():
        raise TLError(f"{path.name!r} has no model.weights.h5 inside; export it again")
    run = build_run_model(meta, f"{path.name}: tlcore.json")
    fd, tmp = tempfile.mkstemp(suffix=".weights.h5", prefix="tlcore-")
    try:
        with os.fdopen(fd, "wb") as out, archive.open("model.weights.h5") as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        with warnings.catch_warnings():
            # Keras only warns for a weights group it cannot place, leaving those layers random:
            # for a file from outside, that is a mismatch.
            warnings.simplefilter("error", UserWarning)
            run.model.load_weights(tmp)
    except TLError:
        raise
    except Exception as exc:  # Keras raises ValueError, KeyError or OSError for a mismatch
        raise TLError(f"the weights in {path.name!r} do not fit the model its tlcore.json describes "
                      f"(backbone {run.spec.name!r}, {len(run.classes)} classes, input size {run.input_size})") from exc
    finally:
        os.unlink(tmp)
    return run


def _load_plain_keras(path: Path, inner_labels: str | None) -> KerasFileModel:
    import keras

    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a file it cannot rebuild
        raise TLError(f"{path.name!r} cannot be loaded as a Keras model "
                      f"({' '.join(str(exc).split())[:160]})") from exc
    inputs, outputs = model.inputs, model.outputs
    shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        got = [tuple(i.shape) for i in inputs]
        raise TLError(f"{path.name!r} takes inputs {got}; expected one batch of square RGB images (None, H, H, 3)")
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        got = [tuple(o.shape) for o in outputs]
        raise TLError(f"{path.name!r} gives outputs {got}; expected one vector of class probabilities (None, n)")
    beside = path.with_name("labels.txt")
    if inner_labels is not None:
        classes = [c.strip() for c in inner_labels.splitlines() if c.strip()]
    elif beside.is_file():
        from .tflite_model import read_labels

        classes = read_labels(beside)
    else:
        raise TLError(f"{path.name!r} has no class names: put its labels.txt (one class per line) beside it")
    n_out = int(outputs[0].shape[1])
    if n_out != len(classes):
        raise TLError(f"{path.name!r} has {n_out} outputs but its labels.txt names {len(classes)} classes")
    return KerasFileModel(model, classes, int(shape[1]), path, {"input_size": int(shape[1]), "source": str(path)})
