"""Phase 1's head trained on cached embeddings with NumPy: the same model, loss and Adam as Keras's ``fit``.

The head is dropout then one dense softmax layer, so an epoch over a few
thousand embeddings is a few dozen small matrix products. Keras's ``fit``
spends hundreds of milliseconds per epoch around them (data adapters,
callbacks, a separate validation pass); this loop spends about a
millisecond, which makes "train again with other settings" instant. The
trained weights are written back into the Keras head after every epoch,
so callbacks (progress, checkpoints) and everything after phase 1 see an
ordinary Keras model. The epoch loop and the callbacks are
:class:`tlcore.training.head_trainer.BaseHeadTrainer`'s; this module is the
NumPy step.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from .head_trainer import MIN_PROB, BaseHeadTrainer, loss_and_accuracy, softmax

# softmax, loss_and_accuracy and MIN_PROB live in head_trainer; they stay importable from here for older callers.
__all__ = ["HeadTrainer", "softmax", "loss_and_accuracy", "MIN_PROB"]


class HeadTrainer(BaseHeadTrainer):
    """Adam on ``head``'s dense layer (``head_dense``), with its dropout rate and optional standardisation.

    ``lr``, ``beta_1``, ``beta_2`` and ``epsilon`` are Keras's Adam settings;
    ``seed`` fixes the shuffling and the dropout masks.
    """

    def __init__(self, head: keras.Model, lr: float, seed: int = 0, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(head, lr, beta_1, beta_2, epsilon)
        kernel, bias = self.dense.get_weights()
        self.w, self.b = kernel.astype(np.float32), bias.astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.m_w, self.v_w = np.zeros_like(self.w), np.zeros_like(self.w)
        self.m_b, self.v_b = np.zeros_like(self.b), np.zeros_like(self.b)
        # Dropout masks from random bytes (a quarter of the random bits of float draws, which dominate an
        # epoch's time): an input is kept when its byte is below keep_bytes, i.e. with probability
        # keep_bytes / 256 (the dropout rate rounded to 1/256), and scaled by its inverse as Keras does.
        self.keep_bytes = int(round((1.0 - self.rate) * 256))
        self.keep_scale = np.float32(256 / self.keep_bytes) if self.keep_bytes else np.float32(0)

    # Optimizer state, for checkpoints ---------------------------------------------------------
    def optimizer_arrays(self) -> list[np.ndarray]:
        """Adam's step count and moments, as arrays (what a checkpoint stores)."""
        return [np.array(self.t, np.int64), self.m_w, self.m_b, self.v_w, self.v_b]

    def load_optimizer_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Restore what :meth:`optimizer_arrays` returned (weights come from the head itself)."""
        t, m_w, m_b, v_w, v_b = arrays
        if m_w.shape != self.w.shape or m_b.shape != self.b.shape:
            raise ValueError(f"optimizer state for shape {m_w.shape}, head has {self.w.shape}")
        self.t = int(t)
        self.m_w, self.m_b, self.v_w, self.v_b = (np.asarray(a, np.float32) for a in (m_w, m_b, v_w, v_b))
        self.w, self.b = (a.astype(np.float32) for a in self.dense.get_weights())

    # Training ---------------------------------------------------------------------------------
    def _dense_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w, self.b

    def _probs(self, x: np.ndarray) -> np.ndarray:
        return softmax(x @ self.w + self.b)

    def _adam(self, g_w: np.ndarray, g_b: np.ndarray) -> None:
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        lr = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for p, g, m, v in ((self.w, g_w, self.m_w, self.v_w), (self.b, g_b, self.m_b, self.v_b)):
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            p -= lr * m / (np.sqrt(v) + self.epsilon)

    def _epoch_order(self, epoch: int, n: int) -> np.ndarray:
        # One generator draws the orders and the dropout masks in turn: a resumed run does not repeat the original's.
        return self.rng.permutation(n)

    def _train_batch(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray, batch_size: int) -> tuple[float, int]:
        if self.rate > 0:  # inverted dropout, as Keras's Dropout layer in training mode
            bits = np.frombuffer(self.rng.bytes(x.size), np.uint8).reshape(x.shape)
            x = x * (bits < self.keep_bytes) * self.keep_scale
        p = self._probs(x)
        rows = np.arange(len(y))
        # Keras's reduction: the weighted sum over the batch divided by the batch size.
        loss_sum = float((weights * -np.log(np.clip(p[rows, y], MIN_PROB, 1.0))).sum())
        correct = int((p.argmax(axis=1) == y).sum())
        g = p
        g[rows, y] -= 1.0
        g *= (weights / len(y))[:, None]
        self._adam(x.T @ g, g.sum(axis=0))
        return loss_sum, correct

    def _epoch_done(self) -> None:
        # Callbacks (progress, checkpoints) read the Keras head, so it gets this epoch's weights.
        self.dense.set_weights([self.w, self.b])
