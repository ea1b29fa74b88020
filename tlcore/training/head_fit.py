"""Phase 1's head trained on cached embeddings with NumPy: the same model, loss and Adam as Keras's ``fit``.

The head is dropout then one dense softmax layer, so an epoch over a few
thousand embeddings is a few dozen small matrix products. Keras's ``fit``
spends hundreds of milliseconds per epoch around them (data adapters,
callbacks, a separate validation pass); this loop spends about a
millisecond, which makes "train again with other settings" instant. The
trained weights are written back into the Keras head after every epoch,
so callbacks (progress, checkpoints) and everything after phase 1 see an
ordinary Keras model.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

__all__ = ["HeadTrainer", "softmax", "loss_and_accuracy", "MIN_PROB"]

MIN_PROB = 1e-7  # Keras clips probabilities here when it reports a cross-entropy


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum so large logits do not overflow."""
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(probs: np.ndarray, y) -> tuple[float, float]:
    """Mean cross-entropy (probabilities clipped as Keras clips them) and accuracy of ``probs`` on labels ``y``."""
    y = np.asarray(y)
    picked = np.clip(probs[np.arange(len(y)), y], MIN_PROB, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == y).mean())


class HeadTrainer:
    """Adam on ``head``'s dense layer (``head_dense``), with its dropout rate and optional standardisation.

    ``lr``, ``beta_1``, ``beta_2`` and ``epsilon`` are Keras's Adam settings;
    ``seed`` fixes the shuffling and the dropout masks.
    """

    def __init__(self, head: keras.Model, lr: float, seed: int = 0, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        self.head = head
        self.dense = head.get_layer("head_dense")
        kernel, bias = self.dense.get_weights()
        self.w, self.b = kernel.astype(np.float32), bias.astype(np.float32)
        self.rate = float(head.get_layer("head_dropout").rate)
        self.lr, self.beta_1, self.beta_2, self.epsilon = lr, beta_1, beta_2, epsilon
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.m_w, self.v_w = np.zeros_like(self.w), np.zeros_like(self.w)
        self.m_b, self.v_b = np.zeros_like(self.b), np.zeros_like(self.b)
        try:
            mean, inv_std = head.get_layer("head_standardize").get_weights()
            self.standardize = (mean.astype(np.float32), inv_std.astype(np.float32))
        except ValueError:  # pretrained features need no standardisation
            self.standardize = None

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
    def _inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.standardize is not None:
            mean, inv_std = self.standardize
            x = (x - mean) * inv_std
        return x

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

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy without dropout (inference mode)."""
        return loss_and_accuracy(self._probs(self._inputs(x)), y)

    def fit(self, x, y, epochs: int, batch_size: int = 32, initial_epoch: int = 0, class_weight: dict | None = None,
            validation_data: tuple | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
        """Train from epoch ``initial_epoch`` to ``epochs``, calling ``callbacks``' ``on_epoch_end`` with Keras's logs.

        Logs hold ``loss`` and ``accuracy`` (training batches, dropout on,
        class-weighted loss as Keras computes it) and, with
        ``validation_data``, ``val_loss`` and ``val_accuracy``. A callback
        setting ``model.stop_training`` ends training after that epoch.
        """
        x, y = self._inputs(x), np.asarray(y, np.int64)
        n = len(y)
        weights = (np.array([class_weight[int(c)] for c in y], np.float32) if class_weight
                   else np.ones(n, np.float32))
        # Dropout masks from random bytes (a quarter of the random bits of float draws, which dominate an
        # epoch's time): an input is kept when its byte is below keep_bytes, i.e. with probability
        # keep_bytes / 256 (the dropout rate rounded to 1/256), and scaled by its inverse as Keras does.
        keep_bytes = int(round((1.0 - self.rate) * 256))
        scale = np.float32(256 / keep_bytes) if keep_bytes else np.float32(0)
        self.head.stop_training = False
        for cb in callbacks:
            cb.set_model(self.head)
        for epoch in range(initial_epoch, epochs):
            order = self.rng.permutation(n)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb, wb = x[idx], y[idx], weights[idx]
                if self.rate > 0:  # inverted dropout, as Keras's Dropout layer in training mode
                    bits = np.frombuffer(self.rng.bytes(xb.size), np.uint8).reshape(xb.shape)
                    xb = xb * (bits < keep_bytes) * scale
                p = self._probs(xb)
                rows = np.arange(len(idx))
                # Keras's reduction: the weighted sum over the batch divided by the batch size.
                loss_sum += float((wb * -np.log(np.clip(p[rows, yb], MIN_PROB, 1.0))).sum())
                correct += int((p.argmax(axis=1) == yb).sum())
                g = p
                g[rows, yb] -= 1.0
                g *= (wb / len(idx))[:, None]
                self._adam(xb.T @ g, g.sum(axis=0))
            logs = {"loss": loss_sum / n, "accuracy": correct / n}
            if validation_data is not None:
                logs["val_loss"], logs["val_accuracy"] = self.evaluate(*validation_data)
            self.dense.set_weights([self.w, self.b])
            for cb in callbacks:
                cb.on_epoch_end(epoch, dict(logs))
            if self.head.stop_training:
                break
