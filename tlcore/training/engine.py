"""The fastest CPU path for a frozen backbone: a cached TFLite copy run by LiteRT with XNNPACK.

Measured on Lite0 with decoded photos (2 AVX2 cores, shared with other
work; images/s, batches of 32): Keras ``predict_on_batch`` 24.5; a
fixed-shape ``tf.function`` 21.7, with XLA 2.6; TFLite float32 with XNNPACK
63-75 at batch 1 (features within 1.2e-5 of Keras), no faster at batch
4-32 via ``resize_tensor_input``; dynamic-range and INT8 TFLite 32 and 59,
with features off by 14-17% of their scale. So: float32 TFLite, batch 1
(``scripts/bench_extract.py`` measures the whole pipeline). The conversion
takes seconds, so the converted backbone is cached under
``default_cache_dir()/engines`` per backbone identity and reused by every
later run (CLI and dashboard alike); when the file is cached the Keras
backbone is never built. Any failure falls back to Keras, logged: a faster
path must never fail a user's run.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.inference import traced_inference
from ..io.atomic import write_bytes_atomic
from ..io.cache_use import touch
from ..io.cpus import usable_cpus
from ..jobs.events import PREPARING, PhaseCallback
from .features import DECODE_VERSION
from ..io.paths import default_cache_dir

__all__ = ["ENGINE_VERSION", "TFLiteEncoder", "convert_backbone", "convert_backbone_int8", "engine_path",
           "fast_encoder", "int8_encoder", "int8_engine_path", "keras_encoder"]

log = logging.getLogger("tlcore")

# Bump when the conversion or the engine's contract changes, so stale files are never reused.
ENGINE_VERSION = "1"
# A converted backbone must reproduce Keras's features this closely (relative to their scale)
# on a probe image, or it is not used.
MAX_RELATIVE_DIFF = 1e-3

Encoder = Callable[[np.ndarray], np.ndarray]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def engine_path(backbone_key: str | None, input_size: int) -> Path | None:
    """Where the converted backbone for ``backbone_key`` is cached; ``None`` for uncacheable backbones.

    The name hashes everything the file depends on: the backbone's identity
    (name and weights), the input size, the decoding and engine versions and
    the converter's version.
    """
    return _engine_file(backbone_key, input_size)


def _engine_file(backbone_key: str | None, input_size: int, *variant: str) -> Path | None:
    """The engine file named by the hash of all it depends on, ``variant`` included (``int8``) and in its name."""
    if not backbone_key:
        return None  # random weights differ on every build
    identity = "|".join([backbone_key, str(input_size), DECODE_VERSION, ENGINE_VERSION, _version("tensorflow"),
                         *variant])
    name = hashlib.sha256(identity.encode()).hexdigest()[:24]
    return default_cache_dir() / "engines" / ".".join([name, *variant, "tflite"])


def keras_encoder(backbone) -> Encoder:
    """The plain Keras path: the backbone in inference mode on float pixels, traced once for any batch size (the
    extraction's batches vary; tracing again for each was most of a small run's extraction)."""
    return traced_inference(backbone)


def convert_backbone(backbone) -> bytes:
    """Convert a Keras backbone to float32 TFLite bytes (input ``[1, H, W, 3]`` pixels 0..255)."""
    from ..models.conversion import convert_tflite, export_saved_model

    tmp = Path(tempfile.mkdtemp(prefix="tlcore-engine-"))
    try:
        export_saved_model(backbone, tmp / "batch1", batch=1)
        return convert_tflite(tmp / "batch1", "tflite-float32")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class TFLiteEncoder:
    """Features of uint8 batches ``(n, H, W, 3)`` from a converted backbone, one image per invoke.

    Batch 1 is deliberate: XNNPACK was fastest there (resized batches of
    4-32 were not faster). Not thread-safe; one caller at a time.
    """

    def __init__(self, model: str | Path | bytes, num_threads: int | None = None):
        from ..models.tflite_model import interpreter_class

        self._model = model
        source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        self.interpreter = interpreter_class()(**source, num_threads=num_threads or usable_cpus())
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        shape = [int(v) for v in self._in["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or np.dtype(self._in["dtype"]) != np.float32:
            raise ValueError(f"engine takes {shape} {np.dtype(self._in['dtype']).name}; expected [1, H, W, 3] float32")
        self.input_size = shape[1]
        self.feature_dim = int(self._out["shape"][-1])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        out = np.empty((len(batch), self.feature_dim), np.float32)
        x = np.empty((1, *batch.shape[1:]), np.float32)  # reused: no allocation per image
        for k, image in enumerate(batch):
            x[0] = image
            self.interpreter.set_tensor(self._in["index"], x)
            self.interpreter.invoke()
            out[k] = self.interpreter.get_tensor(self._out["index"])[0]
        return out

    def replicas(self, n: int) -> list[TFLiteEncoder]:
        """``n`` independent one-thread copies of this engine, one per extraction thread: each thread then decodes
        and embeds its own photos with no hand-over, which keeps both cores busy where one shared interpreter
        with two threads left them waiting on each other (see docs/BENCHMARKS.md, extraction at the limit)."""
        return [TFLiteEncoder(self._model, 1) for _ in range(n)]


def _agrees(engine: Encoder, backbone, input_size: int) -> float:
    """Largest difference between the engine's and Keras's features on a probe image, relative to their scale."""
    probe = np.random.default_rng(0).integers(0, 256, (1, input_size, input_size, 3), dtype=np.uint8)
    ref = keras_encoder(backbone)(probe)
    got = engine(probe)
    if got.shape != ref.shape:
        return float("inf")
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-6))


def fast_encoder(get_backbone: Callable[[], object], backbone_key: str | None, input_size: int,
                 num_threads: int | None = None, on_phase: PhaseCallback | None = None) -> Encoder:
    """The fastest encoder available for the frozen backbone ``get_backbone()`` identified by ``backbone_key``.

    A cached engine file is loaded without building the backbone. Otherwise
    the backbone is converted, checked against Keras on a probe image and
    written atomically to :func:`engine_path`. Uncacheable backbones
    (``backbone_key`` None), failed conversions and engines that disagree
    with Keras use :func:`keras_encoder`; the reason is logged. ``on_phase(PREPARING)`` is called before the
    conversion (seconds, once per backbone and machine), so a follower knows why embedding waits.
    """
    path = engine_path(backbone_key, input_size)
    if path is None:
        return keras_encoder(get_backbone())
    cached = _cached(path, num_threads)
    if cached is not None:
        return cached
    # One process converts; others that need the same engine meanwhile (the server's start preparing it, a team's
    # first jobs) wait for it and load its file instead of converting it again.
    with _converting(path, on_phase):
        cached = _cached(path, num_threads)  # converted by the process that held the lock
        if cached is not None:
            return cached
        return _convert(get_backbone, path, backbone_key, input_size, num_threads, on_phase)


def _cached(path: Path, num_threads: int | None) -> Encoder | None:
    if not path.is_file():
        return None
    try:
        encoder = TFLiteEncoder(path, num_threads)
        touch(path)  # used now: the cache drops the least recently used engines first
        return encoder
    except Exception:  # noqa: BLE001 - a damaged cache file is converted again
        log.warning("cached engine %s cannot be loaded; converting the backbone again", path, exc_info=True)
        return None


@contextmanager
def _converting(path: Path, on_phase: PhaseCallback | None):
    """Hold the engine's conversion lock (saying PREPARING while another process holds it). Without a lock (a
    read-only cache) the caller converts as before: only time is lost."""
    fd = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        log.info("no conversion lock for %s; converting without one", path)
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if on_phase is not None:
                    on_phase(PREPARING)  # the wait is the preparation another process is doing
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _convert(get_backbone, path: Path, backbone_key: str, input_size: int, num_threads: int | None,
             on_phase: PhaseCallback | None) -> Encoder:
    backbone = get_backbone()
    if on_phase is not None:
        on_phase(PREPARING)
    try:
        data = convert_backbone(backbone)
        engine = TFLiteEncoder(data, num_threads)
        diff = _agrees(engine, backbone, input_size)
        if not diff <= MAX_RELATIVE_DIFF:
            log.warning("converted backbone %s differs from Keras by %.2g (relative); using Keras", backbone_key, diff)
            return keras_encoder(backbone)
    except Exception:  # noqa: BLE001 - the converter raises many types; Keras still works
        log.warning("could not convert backbone %s to TFLite; using Keras", backbone_key, exc_info=True)
        return keras_encoder(backbone)
    try:
        write_bytes_atomic(path, data)
    except OSError:  # a read-only cache only costs the next run a conversion
        log.warning("could not cache the converted backbone at %s", path, exc_info=True)
    return engine


# INT8 engine ---------------------------------------------------------------------------------
# Kept apart from the float32 engine above: a different file name (``.int8.tflite``, another hash), features keyed
# by the file's own content (it depends on the calibration photos), and it is only ever asked for by
# tlcore.training.int8_choice, which decides whether its features are good enough.


def int8_engine_path(backbone_key: str | None, input_size: int) -> Path | None:
    """Where the INT8 engine of ``backbone_key`` is cached (never the float32 engine's file); ``None`` when the
    backbone is uncacheable."""
    return _engine_file(backbone_key, input_size, "int8")


def convert_backbone_int8(backbone, calibration: np.ndarray) -> bytes:
    """Convert a Keras backbone to INT8 TFLite bytes (every weight and activation 8-bit, float32 pixels in and
    features out, as the float32 engine) calibrated on ``calibration``, uint8 images ``(n, H, W, 3)``."""
    from ..models.conversion import convert_tflite, export_saved_model

    tmp = Path(tempfile.mkdtemp(prefix="tlcore-engine-int8-"))
    try:
        export_saved_model(backbone, tmp / "batch1", batch=1)
        return convert_tflite(tmp / "batch1", "tflite-int8", calibration=calibration)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def int8_encoder(get_backbone: Callable[[], object], backbone_key: str, input_size: int,
                 get_calibration: Callable[[], np.ndarray], num_threads: int | None = None,
                 on_phase: PhaseCallback | None = None) -> tuple[TFLiteEncoder, str] | None:
    """The INT8 engine of the backbone and its identity (the first 16 hex digits of the file's SHA-256, for
    feature cache keys), or ``None`` when it cannot be had (logged): a faster path must never fail a run.

    A cached file is loaded as is; otherwise the backbone is converted with ``get_calibration()`` (uint8
    images) and the file written atomically to :func:`int8_engine_path`. ``on_phase(PREPARING)`` is said
    before a conversion.
    """
    path = int8_engine_path(backbone_key, input_size)
    if path is None:
        return None
    if path.is_file():
        try:
            data = path.read_bytes()
            encoder = TFLiteEncoder(data, num_threads)
            touch(path)
            return encoder, hashlib.sha256(data).hexdigest()[:16]
        except Exception:  # noqa: BLE001 - a damaged file is converted again below
            log.warning("cached INT8 engine %s cannot be loaded; converting the backbone again", path, exc_info=True)
    try:
        backbone = get_backbone()
        calibration = get_calibration()
        if on_phase is not None:
            on_phase(PREPARING)
        data = convert_backbone_int8(backbone, calibration)
        encoder = TFLiteEncoder(data, num_threads)
    except Exception:  # noqa: BLE001 - the converter raises many types; float32 still works
        log.warning("could not make the INT8 engine of %s; extracting with float32", backbone_key, exc_info=True)
        return None
    try:
        write_bytes_atomic(path, data)
    except OSError:
        log.warning("could not cache the INT8 engine at %s", path, exc_info=True)
    return encoder, hashlib.sha256(data).hexdigest()[:16]
