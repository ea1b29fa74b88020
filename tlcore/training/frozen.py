"""The frozen backbone a command embeds photos with: its cache identity, the model built at most once, and its
fastest encoder. One home for training, the learning curve, the label check and the server's start, which prepares
the default backbone's engine before the first user's job needs it."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..backbones.registry import DEFAULT_BACKBONE, create_backbone, get_spec
from ..io.errors import TLError
from ..io.paths import default_cache_dir, start_tlcore
from ..jobs.events import LOADING, PhaseCallback, no_phase

__all__ = ["FrozenBackbone", "weights_key", "prepare_engine", "engine_ready", "prepare_in_background"]

log = logging.getLogger("tlcore")


def weights_key(name: str, weights, size: int | None = None) -> str | None:
    """Identity of the backbone's weights (and of an input ``size`` other than the backbone's own) for the
    feature cache; None = do not cache."""
    if weights is None:
        return None  # random weights differ on every build
    if weights == "imagenet":
        key = f"{name}|imagenet"
    else:
        path = Path(weights)
        if not path.is_file():
            raise TLError(f"weights file {str(path)!r} does not exist; pass imagenet, none or a file path")
        key = f"{name}|file:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    # The default size keeps the key it always had, so caches made before the option stay valid.
    return key if size is None else f"{key}|{size}px"


class FrozenBackbone:
    """Backbone ``name`` with ``weights`` at ``input_size`` (None: its own): ``key`` names its features in the
    cache, :meth:`model` builds it once (saying LOADING, seeded so random weights build the same way),
    :meth:`encoder` is its fastest encoder (:func:`tlcore.training.engine.fast_encoder`)."""

    def __init__(self, name: str = DEFAULT_BACKBONE, weights: str | None = "imagenet", input_size: int | None = None,
                 seed: int = 0, on_phase: PhaseCallback | None = None):
        self.spec = get_spec(name)
        self.size = input_size or self.spec.input_size
        self.key = weights_key(self.spec.name, weights, None if self.size == self.spec.input_size else self.size)
        self._weights, self._seed, self._phase = weights, seed, on_phase or no_phase
        self._model = None

    def model(self):
        """The Keras backbone, built on the first call."""
        if self._model is None:
            import keras

            self._phase(LOADING)
            keras.utils.set_random_seed(self._seed)
            self._model = create_backbone(self.spec.name, weights=self._weights,
                                          input_shape=(self.size, self.size, 3))
        return self._model

    def encoder(self):
        """Its fastest encoder: the cached engine when there is one (the Keras model is then never built)."""
        from .engine import fast_encoder

        return fast_encoder(self.model, self.key, self.size, on_phase=self._phase)


def engine_ready(name: str = DEFAULT_BACKBONE, weights: str | None = "imagenet",
                 input_size: int | None = None) -> bool:
    """Whether this machine's cache already holds the converted engine of that backbone (cheap: no model built)."""
    from .engine import engine_path

    frozen = FrozenBackbone(name, weights, input_size)
    path = engine_path(frozen.key, frozen.size)
    return path is None or path.is_file()


def prepare_engine(name: str = DEFAULT_BACKBONE, weights: str | None = "imagenet", input_size: int | None = None,
                   on_phase: PhaseCallback | None = None) -> Path | None:
    """Convert backbone ``name``'s engine into the cache now, unless it is there already, so that no user's job
    waits for it; returns the engine's path (None for an uncacheable backbone). A conversion that fails or
    disagrees with Keras leaves no file, as in a job: jobs then use Keras."""
    from .engine import engine_path

    frozen = FrozenBackbone(name, weights, input_size, on_phase=on_phase)
    frozen.encoder()
    path = engine_path(frozen.key, frozen.size)
    return path if path is not None and path.is_file() else None


def prepare_in_background():
    """At a server's start: when the default backbone's engine is not cached yet, convert it in a process of its
    own (``python -m tlcore prepare``, its errors in ``engines/prepare.log``) and return that process; a job that
    needs the engine meanwhile waits for it instead of converting it again (:func:`tlcore.training.engine.
    fast_encoder`). None when there is nothing to do or it could not start (jobs then convert it, as before)."""
    try:
        if engine_ready():
            return None
    except TLError as exc:
        log.warning("could not start preparing the default backbone (%s); the first job will", exc)
        return None
    # A failure only means that the first job converts it, as before.
    return start_tlcore(["prepare", "--json"], default_cache_dir() / "engines" / "prepare.log",
                        "preparing the default backbone")
