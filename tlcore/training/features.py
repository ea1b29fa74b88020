"""Phase 1's expensive part: backbone embeddings, cached on disk.

An embedding is keyed by the backbone's identity (name, weights, input size)
and the image file's content, so a second run, or a second head on the same
photos, never calls the backbone again.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.cache_use import touch
from ..jobs.events import Ticker
from ..io.cpus import usable_cpus
from ..data.images import ImageDecodeError, decode_image
from ..io.paths import default_cache_dir

__all__ = ["FeatureCache", "FeatureResult", "PREFETCH_BATCHES", "SLICE_SECONDS", "collect_features",
           "extract_features"]

# Bump when decoding or resizing changes, so stale embeddings are never reused.
DECODE_VERSION = "2"  # 2: transparent colours in L/RGB blended on white, 16-bit rounding
# Batches decoded ahead of the encoder: one hides decoding behind inference; more only costs memory.
PREFETCH_BATCHES = 1
# About how long one call of the encoder may take: the progress count moves between calls, so a slow
# backbone gets fewer photos at once (the TFLite engine runs one photo per invoke anyway).
SLICE_SECONDS = 0.5


class FeatureCache:
    """Embeddings stored as one ``.npy`` file per (backbone, image content)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir() / "features"

    def _path(self, backbone_key: str, content_sha: str) -> Path:
        folder = hashlib.sha256(f"{backbone_key}|{DECODE_VERSION}".encode()).hexdigest()[:16]
        return self.root / folder / content_sha[:2] / f"{content_sha}.npy"

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
        path = self._path(backbone_key, content_sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a crash or a concurrent run never leaves a half file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(vector, np.float32), allow_pickle=False)
        os.replace(tmp, path)


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

    Decoding runs in a thread pool, one batch ahead of the encoder, so the
    two overlap; at most ``1 + PREFETCH_BATCHES`` batches of decoded images
    exist at once, whatever the number of files.
    """
    total = len(paths)
    report = Ticker(on_progress, total, clock=clock)
    report(0)  # at once: a follower learns the count before the first file is even read
    vectors: dict[int, np.ndarray] = {}
    skipped: list[dict] = []
    # Only (index, sha) is kept for files to embed: their bytes are read again by the decoder,
    # so memory does not grow with the dataset.
    todo: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        data, error = _read(path)
        if error:
            skipped.append({"path": str(path), "reason": error})
        else:
            sha = hashlib.sha256(data).hexdigest()
            del data
            hit = cache.get(backbone_key, sha) if cache is not None and backbone_key else None
            if hit is not None:
                vectors[i] = hit
            else:
                todo.append((i, sha))
        report(len(vectors) + len(skipped))
    hits = len(vectors)
    done = hits + len(skipped)
    encoder = get_encoder() if todo else None
    slices = _Slices(batch_size, clock)

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

    def embed(ready: list) -> None:
        batch = np.stack([img for _, _, img in ready])
        feats = slices.encode(encoder, batch)
        del batch
        for (i, sha, _img), vec in zip(ready, feats):
            vectors[i] = vec
            if cache is not None and backbone_key:
                cache.put(backbone_key, sha, vec)

    chunks = iter(range(0, len(todo), batch_size))
    pending: deque[list[Future]] = deque()
    with ThreadPoolExecutor(max_workers=_decode_workers()) as pool:

        def submit_next() -> bool:
            start = next(chunks, None)
            if start is not None:
                pending.append([pool.submit(decode, item) for item in todo[start:start + batch_size]])
            return start is not None

        submit_next()
        while pending:
            futures = pending.popleft()
            # Queue the following batch before waiting on this one: it decodes while this one is
            # encoded, and nothing further is queued until the encoder has taken this batch.
            while len(pending) < PREFETCH_BATCHES and submit_next():
                pass
            # Photos are taken as they are decoded, a slice at a time, so the count moves within a batch.
            ready: list = []
            for k, future in enumerate(futures):
                i, sha, img, err = future.result()
                if err is not None:
                    skipped.append({"path": str(paths[i]), "reason": err})
                    done += 1
                else:
                    ready.append((i, sha, img))
                if ready and (len(ready) >= slices.size or k == len(futures) - 1):
                    embed(ready)
                    done += len(ready)
                    ready = []
                report(done)
            del futures
            if not pending:  # PREFETCH_BATCHES = 0: strictly one batch after another
                submit_next()
    report(total)
    return collect_features(vectors, skipped, hits)


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
