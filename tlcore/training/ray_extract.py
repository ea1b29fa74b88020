"""Embedding extraction on a Ray cluster with Ray Data (issue 20): the same vectors, into the same cache.

``python -m tlcore train DATA --ray ADDRESS`` (or ``$TLCORE_RAY_ADDRESS``; a job the cluster runs borrows only
its free CPUs, see :func:`spare_rule`) sends the photos that are not in the feature cache to the cluster as a Ray Data dataset of ``(index, path, content
sha)`` rows. ``map_batches`` runs :class:`Embedder`, a callable class, so each Ray worker builds ONE encoder (the
local path's :func:`~tlcore.training.engine.fast_encoder`, from the backbone's name, weights, input size and
seed: :class:`EncoderRecipe`) and reads, decodes, augments and embeds its batches itself. The driver reads the
results with ``iter_batches`` as they come, reports progress, and writes each vector into the driver's
:class:`~tlcore.training.features.FeatureCache` under the same key a local run uses, so a later local run only
has cache hits (and the cluster needs no shared cache folder). Files that cannot be read or decoded are skipped
with the same reasons as locally.

What the cluster needs to see: this tlcore (installed on every node, or this checkout at the same path: the
workers get its folder on ``PYTHONPATH``) with its requirements, the photos at the same paths (shared storage),
and a weights file at the same path when one is used. The converted backbone (``engines/`` of the cache) is
looked up under the driver's cache folder (``$TLCORE_CACHE_DIR``); a node that cannot see it converts the
backbone itself, once per worker.

Ray is imported only inside the functions that use a cluster: a run without ``--ray`` and without
``$TLCORE_RAY_ADDRESS`` never imports it.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.images import ImageDecodeError, decode_image
from ..io.errors import TLError
from ..io.paths import default_cache_dir, tlcore_environment
from ..io.settings import check_settings, setting
from ..jobs.events import Ticker
from ..jobs.ray_jobs import ENV as RAY_ADDRESS_ENV
from .features import FeatureCache, FeatureResult, collect_features, extract_features

__all__ = ["ExecutorConfig", "Spare", "RAY_ADDRESS_ENV", "LOCAL_EXECUTOR", "ray_address", "spare_rule",
           "too_few_to_borrow", "EncoderRecipe", "Embedder", "RayExtraction"]

log = logging.getLogger("tlcore")

LOCAL_EXECUTOR = {"engine": "local"}  # the result's "executor" when the embeddings were computed here
# Batches per worker that the photos are cut into: the progress count moves several times per worker, and a
# slow worker holds back at most a quarter of its share.
BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a run computes its embeddings; the ``train`` command's ``--ray`` comes from here."""

    ray: str = setting("", f"compute the embeddings on the Ray cluster at ADDRESS (auto, host:port or "
                           f"ray://host:port); default ${RAY_ADDRESS_ENV}; on this machine when neither is set, "
                           "or with --ray local", metavar="ADDRESS")
    ray_spare_photos: int = setting(2000, "a job the Ray cluster runs spreads its embeddings over the cluster's free "
                                          "CPUs, one per this many photos to embed; with fewer photos, or no CPU "
                                          "free, it embeds them with the CPUs it holds", minimum=1, unit="photos",
                                    metavar="N")
    ray_spare_wait: float = setting(20.0, "seconds a job on a Ray cluster waits for the free CPUs it counted before "
                                          "embedding with its own instead", minimum=0, metavar="SECONDS")


@dataclass(frozen=True)
class Spare:
    """How a job the cluster runs borrows the cluster's free CPUs (:class:`ExecutorConfig`'s two ``ray_spare_``
    settings): one per ``photos`` photos to embed, waited for at most ``wait`` seconds."""

    photos: int
    wait: float


def ray_address(config: ExecutorConfig = ExecutorConfig()) -> str | None:
    """The Ray cluster the embeddings are computed on: ``config``'s (``--ray``), else the jobs' cluster
    (:func:`tlcore.jobs.ray_jobs.ray_address`, ``$TLCORE_RAY_ADDRESS``), else None: on this machine. ``local``
    means this machine whatever the environment says."""
    from ..jobs.ray_jobs import check_address, ray_address as jobs_address

    text = (config.ray or "").strip()
    if text == "local":
        return None
    return check_address(text, "--ray") if text else jobs_address()


def spare_rule(config: ExecutorConfig = ExecutorConfig()) -> Spare | None:
    """For a job a Ray cluster runs (it holds its CPUs there) with no ``--ray`` of its own: its :class:`Spare`
    rule. Its embeddings then go to the cluster only on CPUs nobody holds: Ray Data workers that asked for CPUs
    the way a job does would wait for the very CPUs the cluster's jobs hold, and with every job waiting so, none
    would ever end (the load simulation ran into exactly that). None for any other run."""
    from ..jobs.ray_jobs import in_cluster_job

    if (config.ray or "").strip() or not in_cluster_job():
        return None
    check_settings(config)
    return Spare(config.ray_spare_photos, config.ray_spare_wait)


def too_few_to_borrow(spare: Spare) -> str:
    """Why a job under ``spare`` embedded with its own CPUs: too few photos."""
    return (f"fewer than {spare.photos} photos to embed (--ray-spare-photos): quicker with the job's own CPUs "
            "than starting workers on the cluster")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _connect(address: str):
    """Ray, connected to the cluster at ``address`` (:func:`tlcore.jobs.ray_jobs.connect`), with Ray Data quiet."""
    from ..jobs.ray_jobs import connect

    ray = connect(address, "--ray")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # progress goes to on_progress, not to a bar on stderr
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no line per dataset run on a command's stderr
    return ray


@dataclass(frozen=True)
class EncoderRecipe:
    """What a Ray worker needs to build the encoder a local run uses: the backbone's name and weights, the input
    size, the feature cache key (None for random weights) and the seed random weights are drawn with."""

    backbone: str
    weights: str | None
    input_size: int
    backbone_key: str | None
    seed: int

    def encoder(self) -> Callable[[np.ndarray], np.ndarray]:
        """The fast encoder (a cached TFLite engine, converted here when missing, or Keras), as the local run
        builds it (:class:`tlcore.training.frozen.FrozenBackbone`, seeded alike: random weights come out the same)."""
        from .frozen import FrozenBackbone

        return FrozenBackbone(self.backbone, self.weights, self.input_size, self.seed).encoder()


def _content(path: str) -> tuple[bytes | None, str | None]:
    """The file's bytes, or the reason they cannot be read (the local extraction's words)."""
    try:
        return Path(path).read_bytes(), None
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"


class Embedder:
    """The ``map_batches`` callable: one encoder per Ray worker, built when the worker starts; each batch of
    ``index, path, sha`` rows comes back as ``index, sha, vector, error, worker`` rows (``error`` empty for an
    embedded photo, the reason it was skipped otherwise, its vector then zeros)."""

    def __init__(self, recipe: EncoderRecipe, transform: Callable[[np.ndarray, str], np.ndarray] | None = None):
        import ray

        self.size, self.transform = recipe.input_size, transform
        self.encode = recipe.encoder()
        self.dim = int(self.encode(np.zeros((1, self.size, self.size, 3), np.uint8)).shape[-1])
        self.worker = ray.get_runtime_context().get_actor_id() or f"pid-{os.getpid()}"

    def _decoded(self, path: str, sha: str) -> tuple[str, np.ndarray | None, str]:
        data, error = _content(path)
        if error:
            return sha, None, error
        # The file may have changed since the driver hashed it: cache under what was really embedded.
        sha = hashlib.sha256(data).hexdigest()
        try:
            image = decode_image(data, self.size)
        except ImageDecodeError as exc:
            return sha, None, str(exc)
        return sha, self.transform(image, sha) if self.transform else image, ""

    def __call__(self, batch: dict) -> dict:
        rows = [self._decoded(str(p), str(s)) for p, s in zip(batch["path"], batch["sha"])]
        vectors = np.zeros((len(rows), self.dim), np.float32)
        ok = [k for k, (_, image, _) in enumerate(rows) if image is not None]
        if ok:
            vectors[ok] = np.asarray(self.encode(np.stack([rows[k][1] for k in ok])), np.float32)
        return {"index": np.asarray(batch["index"], np.int64), "sha": np.array([r[0] for r in rows]),
                "vector": vectors, "error": np.array([r[2] for r in rows]),
                "worker": np.array([self.worker] * len(rows))}


def _worker_environment() -> dict:
    """What the workers' processes need: this tlcore first on their path, the driver's cache folder (for the
    converted backbone)."""
    return {"env_vars": {"PYTHONPATH": tlcore_environment()["PYTHONPATH"], "TLCORE_CACHE_DIR": str(default_cache_dir())}}


class RayExtraction:
    """Extraction on the Ray cluster at ``address`` for one run: :meth:`extract` takes the arguments of
    :func:`~tlcore.training.features.extract_features` (its ``get_encoder`` is not used: each worker builds its
    own from ``recipe``); :meth:`executor` says where it ran. Connects on first use; an address that is not a
    reachable Ray cluster is a :class:`TLError`."""

    def __init__(self, address: str, recipe: EncoderRecipe, spare: Spare | None = None):
        self.address, self.recipe, self.spare = address, recipe, spare
        self.workers: set[str] = set()
        self._ray = None
        self.on_cluster = spare is None  # a spare-CPU run says "ray" only once the cluster embedded something
        self.local_reason = ""  # why a spare-CPU run embedded with its own CPUs

    def _cluster(self):
        if self._ray is None:
            self._ray = _connect(self.address)
        return self._ray

    def executor(self) -> dict:
        """``{"engine": "ray", "address", "nodes" (alive in the cluster), "workers" (that embedded photos)}``, or
        for a job that embedded with its own CPUs ``{"engine": "local", "reason"}``."""
        if not self.on_cluster:
            return {**LOCAL_EXECUTOR, "reason": self.local_reason or "nothing was left to embed"}
        ray = self._cluster()
        address = ray.get_runtime_context().gcs_address if self.address == "auto" else self.address
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        return {"engine": "ray", "address": address, "nodes": nodes, "workers": len(self.workers)}

    def extract(self, paths: Sequence[str], backbone_key: str | None, get_encoder=None, input_size: int | None = None,
                cache: FeatureCache | None = None, batch_size: int = 32,
                on_progress: Callable[[int, int], None] | None = None,
                transform: Callable[[np.ndarray, str], np.ndarray] | None = None) -> FeatureResult:
        """Embed every decodable file in ``paths`` on the cluster; the result and the cache entries are those
        :func:`~tlcore.training.features.extract_features` gives (``input_size`` must be the recipe's). Under a
        :class:`Spare` rule the photos to embed go to the cluster's free CPUs, else to ``get_encoder()`` here."""
        if input_size is not None and input_size != self.recipe.input_size:
            raise ValueError(f"input size {input_size} differs from the recipe's {self.recipe.input_size}")
        if self.spare is not None and len(paths) < self.spare.photos:  # not worth connecting to the cluster
            self.local_reason = self.local_reason or too_few_to_borrow(self.spare)
            return extract_features(paths, backbone_key, get_encoder, self.recipe.input_size, cache, batch_size,
                                    on_progress, transform)
        total = len(paths)
        report = Ticker(on_progress, total)
        report(0)  # at once, before connecting: a follower learns the count
        ray = self._cluster()
        vectors: dict[int, np.ndarray] = {}
        skipped: list[dict] = []
        todo: list[dict] = []
        use_cache = cache is not None and bool(backbone_key)
        for i, path in enumerate(paths):
            data, error = _content(path)
            if error:
                skipped.append({"path": str(path), "reason": error})
                continue
            sha = hashlib.sha256(data).hexdigest()
            hit = cache.get(backbone_key, sha) if use_cache else None
            if hit is not None:
                vectors[i] = hit
            else:
                todo.append({"index": i, "path": str(path), "sha": sha})
            report(len(vectors) + len(skipped))
        hits = len(vectors)
        done = hits + len(skipped)
        room = None
        if todo and self.spare is not None:
            room = self._spare_room(len(todo))
            if room is None:  # embedded here, with the CPUs this job holds
                here = extract_features([t["path"] for t in todo], backbone_key, get_encoder, self.recipe.input_size,
                                        cache, batch_size, lambda n, _: report(done + n), transform)
                vectors.update((todo[k]["index"], vec) for k, vec in zip(here.kept, here.features))
                skipped += here.skipped
                todo = []
        if todo:
            cpus = room[1] if room else max(1, int(ray.cluster_resources().get("CPU", 1)))
            chunk = max(1, min(batch_size, math.ceil(len(todo) / (cpus * BATCHES_PER_WORKER))))
            blocks = math.ceil(len(todo) / chunk)
            placed = {"scheduling_strategy": _in_group(room[0])} if room else {}
            dataset = ray.data.from_items(todo, override_num_blocks=blocks).map_batches(
                Embedder, fn_constructor_kwargs={"recipe": self.recipe, "transform": transform},
                batch_size=chunk, batch_format="numpy", num_cpus=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(cpus, blocks)),
                runtime_env=_worker_environment(), **placed)
            self.on_cluster = True
            try:
                for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    for i, sha, vec, error, worker in zip(out["index"], out["sha"], out["vector"], out["error"],
                                                          out["worker"]):
                        if error:
                            skipped.append({"path": str(paths[int(i)]), "reason": str(error)})
                            continue
                        vectors[int(i)] = vec = np.asarray(vec, np.float32)
                        self.workers.add(str(worker))
                        if use_cache:
                            cache.put(backbone_key, str(sha), vec)
                    done += len(out["index"])
                    report(done)
            except TLError:
                raise
            except Exception as exc:  # noqa: BLE001 - a worker's failure arrives as a Ray error of many kinds
                raise TLError(f"the Ray cluster at {self.address!r} could not compute the embeddings "
                              f"({_one_line(exc)})") from None
            finally:
                if room:
                    from ray.util.placement_group import remove_placement_group

                    remove_placement_group(room[0])  # the borrowed CPUs go back at once
        report(total)
        return collect_features(vectors, skipped, hits)

    def _spare_room(self, photos: int):
        """``(placement group, CPUs)`` holding free CPUs of the cluster for this job's workers, one per
        ``spare.photos`` photos, or None (with :attr:`local_reason` said) when there are too few photos, no CPU
        is free, or the free ones were taken before ``spare.wait`` seconds passed. The group is what makes the
        borrowing safe: it either has its CPUs or is given up, so no worker waits for a CPU a job holds."""
        from ray.util.placement_group import placement_group, remove_placement_group

        if photos < self.spare.photos:
            self.local_reason = too_few_to_borrow(self.spare)
            return None
        free = int(self._cluster().available_resources().get("CPU", 0))
        wanted = min(free, photos // self.spare.photos)
        if wanted < 1:
            self.local_reason = "no CPU of the Ray cluster was free: embedded with the job's own CPUs"
            return None
        group = placement_group([{"CPU": 1}] * wanted, strategy="SPREAD")
        if not group.wait(timeout_seconds=self.spare.wait):
            remove_placement_group(group)
            self.local_reason = (f"the {wanted} free CPU(s) of the Ray cluster were taken before {self.spare.wait:g} s "
                                 "passed: embedded with the job's own CPUs")
            return None
        return group, wanted


def _in_group(group):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
