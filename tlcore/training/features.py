"""Phase 1's expensive part: backbone embeddings, cached on disk.

An embedding is keyed by the backbone's identity (name, weights, input size)
and the image file's content, so a second run, or a second head on the same
photos, never calls the backbone again.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.cache_use import touch
from ..jobs.events import Ticker
from ..io.cpus import usable_cpus
from ..data.images import ImageDecodeError, decode_image
from ..io.paths import default_cache_dir

__all__ = ["FeatureCache", "FeatureResult", "PREFETCH_BATCHES", "SLICE_SECONDS", "cache_entries",
           "collect_features", "extract_features"]

# Bump when decoding or resizing changes, so stale embeddings are never reused.
DECODE_VERSION = "2"  # 2: transparent colours in L/RGB blended on white, 16-bit rounding
# Batches decoded ahead of the encoder: one hides decoding behind inference; more only costs memory.
PREFETCH_BATCHES = 1
# About how long one call of a shared encoder (Keras) may take: the progress count moves between calls, so a
# slow backbone gets fewer photos at once. Engines with replicas embed one photo per call anyway.
SLICE_SECONDS = 0.5
# Files looked up in the cache per round of the lookup threads.
LOOKUP_CHUNK = 256


class FeatureCache:
    """Embeddings stored as one ``.npy`` file per (backbone, image content)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir() / "features"
        self._folders: set[str] = set()  # folders this instance made: one mkdir each, not one per write

    def _path(self, backbone_key: str, content_sha: str) -> Path:
        return self.root / _folder(backbone_key) / f"{content_sha}.npy"

    def get(self, backbone_key: str, content_sha: str) -> np.ndarray | None:
        """The cached embedding, or None; a hit is marked as used (the cache drops the least recently used)."""
        path = self._path(backbone_key, content_sha)
        try:
            with open(path, "rb") as f:
                vector = np.load(f, allow_pickle=False)
                mtime = os.fstat(f.fileno()).st_mtime
        except (OSError, ValueError):
            return None
        touch(path, mtime)  # a write only when the mark is older than a few minutes
        return vector

    def put(self, backbone_key: str, content_sha: str, vector: np.ndarray) -> None:
        vector = np.ascontiguousarray(vector, np.float32)
        folder = os.path.join(self.root, _folder(backbone_key))
        path = os.path.join(folder, f"{content_sha}.npy")
        # Write-then-rename: a crash or a concurrent run never leaves a half file. The temporary name is this
        # process's and thread's own. Plain os calls and a ready-made header: extraction threads call this once
        # per photo, and every bit of Python here is time they hold the GIL from each other.
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        data = _npy_header(vector.shape) + vector.tobytes()
        for attempt in (1, 2):
            if attempt == 2 or folder not in self._folders:
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
                break
            except FileNotFoundError:  # the folder was removed since (the cache's clean-up): made again
                if attempt == 2:
                    raise
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)


@functools.lru_cache(maxsize=256)
def _folder(backbone_key: str) -> str:
    # One flat folder per backbone: a sub-folder per two hex digits made a first run create up to 256 folders
    # per key (and per augmented copy), which cost more than writing the embeddings (0.2 s for 400 photos).
    return hashlib.sha256(f"{backbone_key}|{DECODE_VERSION}".encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header of a float32 array of ``shape`` (what ``np.save`` writes before the data)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return out.getvalue()


def cache_entries(root: str | Path) -> list[Path]:
    """Every entry of the feature cache folder ``root`` (``<backbone>/<sha>.npy``, and temporary files a crash left)
    for the clean-up (:mod:`tlcore.lab.gc`); a sub-folder the earlier layout left (``<backbone>/<xx>/``) is one
    entry, removed whole."""
    entries = []
    for backbone in _listing(Path(root)):
        entries += _listing(backbone)
    return entries


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
    except OSError:
        return []


@dataclass
class FeatureResult:
    """Embeddings of the usable files; ``kept`` indexes into the input paths."""

    features: np.ndarray
    kept: list[int]
    skipped: list[dict]
    cache_hits: int
    computed: int


def _read(path: str) -> tuple[bytes | None, str | None]:
    try:
        return Path(path).read_bytes(), None
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"


def _decode_workers() -> int:
    return min(4, usable_cpus())


def extract_features(
    paths: Sequence[str],
    backbone_key: str | None,
    get_encoder: Callable[[], Callable[[np.ndarray], np.ndarray]],
    input_size: int,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
    transform: Callable[[np.ndarray, str], np.ndarray] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FeatureResult:
    """Embed every decodable file in ``paths``.

    ``get_encoder()`` returns a function from a uint8 batch ``(n, H, W, 3)``
    to features ``(n, D)``; it is called only if some image is not cached
    (``backbone_key=None`` disables the cache, e.g. for random weights).
    ``on_progress(done, total)`` is called with 0 before any work, then at
    least every :data:`~tlcore.jobs.events.REPORT_EVERY` seconds of ``clock``
    plus the time one photo takes (never more often), and with the total at
    the end: the encoder gets slices of a batch sized to take about
    :data:`SLICE_SECONDS`, so a slow backbone still moves the count. Files
    that cannot be decoded are skipped and reported as ``{"path", "reason"}``.
    ``transform(image, content_sha)``, if given, changes each decoded image
    before embedding (augmentation); it must be deterministic for a given
    sha and be part of ``backbone_key``, since the cache trusts the key.

    An encoder with ``replicas(n)`` (a TFLite engine) is copied once per
    thread, and each thread decodes and embeds its own photos; any other
    encoder (Keras) is shared, fed batches decoded one batch ahead by a
    thread pool. Either way memory holds a bounded number of decoded photos,
    whatever the number of files.
    """
    total = len(paths)
    report = Ticker(on_progress, total, clock=clock)
    report(0)  # at once: a follower learns the count before the first file is even read
    vectors: dict[int, np.ndarray] = {}
    skipped: list[dict] = []
    use_cache = cache is not None and bool(backbone_key)

    def progress() -> None:  # on the caller's thread only (the Ticker is not shared)
        report(len(vectors) + len(skipped))

    def skip(i: int, reason: str) -> None:
        skipped.append({"path": str(paths[i]), "reason": reason})

    lookups = _Lookups(paths, lambda sha: cache.get(backbone_key, sha) if use_cache else None, vectors, skip)
    lookups.start()
    try:
        first = lookups.first_miss(progress)
        if first is not None:
            encoder = get_encoder()

            def decode(item):
                i, sha = item
                data, error = _read(paths[i])
                if error:
                    return i, sha, None, error
                # The file may have changed since it was hashed: cache under what was really embedded.
                sha = hashlib.sha256(data).hexdigest()
                try:
                    image = decode_image(data, input_size)
                    return i, sha, transform(image, sha) if transform else image, None
                except ImageDecodeError as exc:
                    return i, sha, None, str(exc)

            def save(sha: str, vec: np.ndarray) -> None:
                if use_cache:
                    cache.put(backbone_key, sha, vec)

            def keep(i: int, vec: np.ndarray) -> None:
                vectors[i] = vec

            items = lookups.misses(first)
            copies = getattr(encoder, "replicas", None)
            if copies is not None:
                encoders = copies(min(_decode_workers(), lookups.misses_at_most()))
                _each_on_own_engine(items, decode, encoders, save, keep, skip, progress)
            else:
                _batched(items, decode, encoder, batch_size, _Slices(batch_size, clock), save, keep, skip, progress)
    finally:
        lookups.stop()
    report(total)
    return collect_features(vectors, skipped, lookups.hits)


class _Lookups:
    """The first stage of an extraction, on a thread of its own: read and hash every file and look it up in the
    cache (a few threads at once: reading and hashing release the GIL). Hits go into ``vectors``, unreadable
    files to ``skip``; the files to embed come out of :meth:`misses` as ``(index, sha)`` while the lookups go
    on, so embedding starts with the first miss instead of after the last lookup. Only ``(index, sha)`` is kept
    for a file to embed: its bytes are read again by the decoder, so memory does not grow with the dataset."""

    _END = object()

    def __init__(self, paths, cached, vectors: dict, skip):
        self.paths, self.cached, self.vectors, self.skip = paths, cached, vectors, skip
        self.hits = self.missed = 0
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.done, self.stopped = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="feature-lookups", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop looking files up (after an error downstream) and wait for the thread."""
        self.stopped.set()
        self.thread.join()

    def _look_up(self, i: int):
        data, error = _read(self.paths[i])
        if error:
            return i, None, None, error
        sha = hashlib.sha256(data).hexdigest()
        return i, sha, self.cached(sha), None

    def _run(self) -> None:
        try:
            total = len(self.paths)
            with ThreadPoolExecutor(max_workers=_decode_workers()) as pool:
                # In chunks: the pending lookups stay few however many files there are.
                for start in range(0, total, LOOKUP_CHUNK):
                    if self.stopped.is_set():
                        break
                    for i, sha, hit, error in pool.map(self._look_up, range(start, min(total, start + LOOKUP_CHUNK))):
                        if error:
                            self.skip(i, error)
                        elif hit is not None:
                            self.vectors[i] = hit
                            self.hits += 1
                        else:
                            self.missed += 1
                            self.queue.put((i, sha))
        except BaseException as exc:  # noqa: BLE001 - raised again where the misses are taken
            self.queue.put(exc)
        finally:
            self.done.set()
            self.queue.put(self._END)

    def _take(self, progress=None):
        """The next miss, or None after the last; ``progress()`` is called every few tenths of a second of
        waiting, so the count of hits moves during a long run of them."""
        while True:
            try:
                got = self.queue.get(timeout=0.2)
            except queue.Empty:
                if progress:
                    progress()
                continue
            if got is self._END:
                self.queue.put(got)  # for whoever asks next (several embedding threads may)
                return None
            if isinstance(got, BaseException):
                raise got
            return got

    def first_miss(self, progress) -> tuple[int, str] | None:
        """The first file to embed, or None when every file was a hit or unreadable (then no encoder is built)."""
        first = self._take(progress)
        progress()
        return first

    def misses(self, first: tuple[int, str]):
        """``first``, then every other file to embed as it is found (safe to share between threads under a lock)."""
        yield first
        while (item := self._take()) is not None:
            yield item

    def misses_at_most(self) -> int:
        """How many files there are to embed at most: the count once the lookups are over, else all the files."""
        return max(1, self.missed) if self.done.is_set() else len(self.paths)


def _each_on_own_engine(items, decode, encoders, save, keep, skip, progress) -> None:
    """Embed ``items`` on threads that each decode a photo and embed it on an engine of their own (one thread
    each), taking the next photo when done: no thread waits for another, so the cores stay busy with decoding
    and inference alike. ``save`` (the cache write) runs on those threads; ``keep``, ``skip`` and ``progress``
    on the caller's. Memory holds one decoded photo per thread."""
    lock = threading.Lock()
    results: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    finished = object()

    def work(encode) -> None:
        try:
            while not stop.is_set():
                with lock:
                    item = next(items, None)
                if item is None:
                    break
                i, sha, image, error = decode(item)
                vec = None
                if error is None:
                    vec = encode(image[None])[0]
                    save(sha, vec)
                results.put((i, vec, error))
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            results.put(exc)
        results.put(finished)

    with ThreadPoolExecutor(max_workers=len(encoders)) as pool:
        for encode in encoders:
            pool.submit(work, encode)
        try:
            running = len(encoders)
            while running:
                got = results.get()
                if got is finished:
                    running -= 1
                    continue
                if isinstance(got, BaseException):
                    raise got
                i, vec, error = got
                if error is None:
                    keep(i, vec)
                else:
                    skip(i, error)
                progress()
        finally:
            stop.set()  # on an error the other threads end after their current photo


def _batched(items, decode, encoder, batch_size, slices, save, keep, skip, progress) -> None:
    """Embed ``items`` with one shared ``encoder`` (Keras, or any encoder without replicas): decoding runs in a
    thread pool, one batch ahead of the encoder, so the two overlap; at most ``1 + PREFETCH_BATCHES`` batches of
    decoded images exist at once, and the encoder gets slices of a batch so the count moves within it."""
    pending: deque[list[Future]] = deque()
    with ThreadPoolExecutor(max_workers=_decode_workers()) as pool:

        def submit_next() -> bool:
            chunk = list(islice(items, batch_size))
            if chunk:
                pending.append([pool.submit(decode, item) for item in chunk])
            return bool(chunk)

        def embed(ready: list) -> None:
            batch = np.stack([img for _, _, img in ready])
            feats = slices.encode(encoder, batch)
            del batch
            for (i, sha, _img), vec in zip(ready, feats):
                keep(i, vec)
                save(sha, vec)
            progress()

        submit_next()
        while pending:
            futures = pending.popleft()
            # Queue the following batch before waiting on this one: it decodes while this one is
            # encoded, and nothing further is queued until the encoder has taken this batch.
            while len(pending) < PREFETCH_BATCHES and submit_next():
                pass
            ready: list = []
            for k, future in enumerate(futures):
                i, sha, img, err = future.result()
                if err is not None:
                    skip(i, err)
                    progress()
                else:
                    ready.append((i, sha, img))
                if ready and (len(ready) >= slices.size or k == len(futures) - 1):
                    embed(ready)
                    ready = []
            del futures
            if not pending:  # PREFETCH_BATCHES = 0: strictly one batch after another
                submit_next()


def collect_features(vectors: dict[int, np.ndarray], skipped: list[dict], hits: int) -> FeatureResult:
    """The :class:`FeatureResult` of an extraction: ``vectors`` by input index (``hits`` of them from the cache),
    stacked in input order; ``skipped`` sorted by path (also used by :mod:`tlcore.training.ray_extract`)."""
    kept = sorted(vectors)
    dim = next(iter(vectors.values())).shape[-1] if vectors else 0
    features = np.stack([vectors[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
    skipped.sort(key=lambda s: s["path"])
    return FeatureResult(features, kept, skipped, cache_hits=hits, computed=len(kept) - hits)


class _Slices:
    """How many photos the encoder gets at once: as many as take about :data:`SLICE_SECONDS` at the speed
    measured so far (one at first), at most a batch, so progress is reported between slices."""

    def __init__(self, batch_size: int, clock: Callable[[], float]):
        self.batch_size, self.clock, self.size = batch_size, clock, 1

    def encode(self, encoder, batch: np.ndarray) -> np.ndarray:
        start = self.clock()
        feats = np.asarray(encoder(batch), np.float32)
        per_photo = (self.clock() - start) / max(len(batch), 1)
        self.size = self.batch_size if per_photo <= 0 else max(1, min(self.batch_size, int(SLICE_SECONDS / per_photo)))
        return feats
