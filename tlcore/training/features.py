"""Phase 1's expensive part: backbone embeddings, cached on disk.

An embedding is keyed by the backbone's identity (name, weights, input size)
and the image file's content, so a second run, or a second head on the same
photos, never calls the backbone again.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.cache_use import touch
from ..io.cpus import usable_cpus
from ..data.images import ImageDecodeError, decode_image
from ..io.paths import default_cache_dir

__all__ = ["FeatureCache", "FeatureResult", "PREFETCH_BATCHES", "extract_features"]

# Bump when decoding or resizing changes, so stale embeddings are never reused.
DECODE_VERSION = "2"  # 2: transparent colours in L/RGB blended on white, 16-bit rounding
# Batches decoded ahead of the encoder: one hides decoding behind inference; more only costs memory.
PREFETCH_BATCHES = 1


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
) -> FeatureResult:
    """Embed every decodable file in ``paths``.

    ``get_encoder()`` returns a function from a uint8 batch ``(n, H, W, 3)``
    to features ``(n, D)``; it is called only if some image is not cached
    (``backbone_key=None`` disables the cache, e.g. for random weights).
    ``on_progress(done, total)`` is called after each batch. Files that
    cannot be decoded are skipped and reported as ``{"path", "reason"}``.
    ``transform(image, content_sha)``, if given, changes each decoded image
    before embedding (augmentation); it must be deterministic for a given
    sha and be part of ``backbone_key``, since the cache trusts the key.

    Decoding runs in a thread pool, one batch ahead of the encoder, so the
    two overlap; at most ``1 + PREFETCH_BATCHES`` batches of decoded images
    exist at once, whatever the number of files.
    """
    total = len(paths)
    vectors: dict[int, np.ndarray] = {}
    skipped: list[dict] = []
    # Only (index, sha) is kept for files to embed: their bytes are read again by the decoder,
    # so memory does not grow with the dataset.
    todo: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        data, error = _read(path)
        if error:
            skipped.append({"path": str(path), "reason": error})
            continue
        sha = hashlib.sha256(data).hexdigest()
        del data
        hit = cache.get(backbone_key, sha) if cache is not None and backbone_key else None
        if hit is not None:
            vectors[i] = hit
        else:
            todo.append((i, sha))
    hits = len(vectors)
    done = hits + len(skipped)
    if on_progress:
        on_progress(done, total)
    encoder = get_encoder() if todo else None

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
            decoded = [f.result() for f in futures]
            del futures
            good = [(i, sha, img) for i, sha, img, err in decoded if err is None]
            for i, _sha, _img, err in decoded:
                if err is not None:
                    skipped.append({"path": str(paths[i]), "reason": err})
            n_decoded = len(decoded)
            del decoded
            if good:
                batch = np.stack([img for _, _, img in good])
                good = [(i, sha) for i, sha, _ in good]  # drop the per-image arrays: the batch holds them
                feats = np.asarray(encoder(batch), np.float32)
                del batch
                for (i, sha), vec in zip(good, feats):
                    vectors[i] = vec
                    if cache is not None and backbone_key:
                        cache.put(backbone_key, sha, vec)
            if not pending:  # PREFETCH_BATCHES = 0: strictly one batch after another
                submit_next()
            done += n_decoded
            if on_progress:
                on_progress(done, total)
    kept = sorted(vectors)
    dim = next(iter(vectors.values())).shape[-1] if vectors else 0
    features = np.stack([vectors[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
    skipped.sort(key=lambda s: s["path"])
    return FeatureResult(features, kept, skipped, cache_hits=hits, computed=len(kept) - hits)
