"""Phase 1's head trained by a hand-written ``tf.GradientTape`` loop: the alternative to :mod:`tlcore.training.head_fit`.

Same model, loss and Adam as :class:`tlcore.training.head_fit.HeadTrainer` (and so
as Keras's ``fit``), but every step is an explicit TensorFlow step on the
Keras head's own variables. Prefer it when:

* gradients need clipping (``clip_norm``): with a handful of photos per
  class, one odd photo can give a gradient hundreds of times the usual
  size, and Adam then carries it in its moments for many steps;
* something must run after every step (a callback's
  ``on_train_batch_end`` receives the step's loss and gradient norm);
* a resumed run must repeat the original exactly, dropout included: the
  shuffling depends only on ``(seed, epoch)`` and each dropout mask only on
  ``(seed, step)``, both of which a checkpoint restores.

On tiny data (few-shot) its per-step overhead does not matter, since an
epoch is one or two steps; on thousands of embeddings the NumPy trainer is
several times faster.
"""
from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from ..io.errors import TLError
from .head_fit import MIN_PROB, loss_and_accuracy, softmax

__all__ = ["TapeTrainer", "check_clip_norm"]



def check_clip_norm(clip_norm) -> None:
    """Raise :class:`TLError` unless ``clip_norm`` is None or a positive finite number."""
    if clip_norm is None:
        return
    ok = isinstance(clip_norm, (int, float)) and not isinstance(clip_norm, bool)
    if not (ok and math.isfinite(clip_norm) and clip_norm > 0):
        raise TLError(f"gradient clipping norm must be a positive number, got {clip_norm!r}")


def _has_batch_hook(callback) -> bool:
    # Reading a step's numbers back from TensorFlow costs a sync per step: only pay it when someone listens.
    return type(callback).on_train_batch_end is not keras.callbacks.Callback.on_train_batch_end


class TapeTrainer:
    """Adam on ``head``'s dense layer (``head_dense``) with ``tf.GradientTape``, optionally clipping gradients.

    Drop-in for :class:`tlcore.training.head_fit.HeadTrainer`: same constructor
    settings (``lr``, ``seed``, Keras's Adam ``beta_1``, ``beta_2``,
    ``epsilon``), same :meth:`fit`, :meth:`evaluate` and optimizer-state
    methods. ``clip_norm``, when set, rescales each step's gradients so
    their global norm is at most ``clip_norm`` before Adam sees them.
    ``last_grad_norm`` is the last step's global gradient norm before
    clipping.
    """

    def __init__(self, head: keras.Model, lr: float, seed: int = 0, clip_norm: float | None = None,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        check_clip_norm(clip_norm)
        self.head = head
        self.dense = head.get_layer("head_dense")
        self.kernel, self.bias = self.dense.kernel, self.dense.bias
        self.rate = float(head.get_layer("head_dropout").rate)
        self.lr, self.beta_1, self.beta_2, self.epsilon = float(lr), beta_1, beta_2, epsilon
        self.seed, self.clip_norm = int(seed), None if clip_norm is None else float(clip_norm)
        self.last_grad_norm: float | None = None
        self.t = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step")
        self.m_w, self.v_w = (tf.Variable(tf.zeros(self.kernel.shape), trainable=False) for _ in range(2))
        self.m_b, self.v_b = (tf.Variable(tf.zeros(self.bias.shape), trainable=False) for _ in range(2))
        try:
            mean, inv_std = head.get_layer("head_standardize").get_weights()
            self.standardize = (mean.astype(np.float32), inv_std.astype(np.float32))
        except ValueError:  # pretrained features need no standardisation
            self.standardize = None
        # Every batch is padded to one shape (see fit), so this traces once per batch size and feature size.
        self._step = tf.function(self._train_step)

    # Optimizer state, for checkpoints ---------------------------------------------------------
    def optimizer_arrays(self) -> list[np.ndarray]:
        """Adam's step count and moments, as arrays (the same layout as HeadTrainer's)."""
        return [np.array(self.t.numpy(), np.int64), *(v.numpy() for v in (self.m_w, self.m_b, self.v_w, self.v_b))]

    def load_optimizer_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Restore what :meth:`optimizer_arrays` returned (weights come from the head itself)."""
        t, m_w, m_b, v_w, v_b = arrays
        if tuple(m_w.shape) != tuple(self.kernel.shape) or tuple(m_b.shape) != tuple(self.bias.shape):
            raise ValueError(f"optimizer state for shape {tuple(m_w.shape)}, head has {tuple(self.kernel.shape)}")
        self.t.assign(int(t))
        for variable, value in zip((self.m_w, self.m_b, self.v_w, self.v_b), (m_w, m_b, v_w, v_b)):
            variable.assign(np.asarray(value, np.float32))

    # Training ---------------------------------------------------------------------------------
    def _inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.standardize is not None:  # constant during training: applied once, not at every step
            mean, inv_std = self.standardize
            x = (x - mean) * inv_std
        return x

    def _train_step(self, x, y, weights, n_real):
        """One Adam step on a padded batch; padding rows have weight 0 and lie beyond ``n_real``."""
        kernel, bias = self.kernel.value, self.bias.value
        step = self.t + 1
        if self.rate > 0:  # inverted dropout as Keras's layer does it, with a mask fixed by (seed, step)
            keep = tf.random.stateless_uniform(tf.shape(x), seed=tf.stack([tf.constant(self.seed, tf.int64), step]))
            x = x * tf.cast(keep >= self.rate, x.dtype) / (1.0 - self.rate)
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, kernel) + bias
            per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            # Keras's reduction: the weighted sum over the batch divided by the batch size.
            loss = tf.reduce_sum(weights * per_sample) / n_real
        grads = tape.gradient(loss, [kernel, bias])
        norm = tf.linalg.global_norm(grads)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        self.t.assign(step)
        t = tf.cast(step, tf.float64)
        lr = tf.cast(self.lr * tf.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t), tf.float32)
        for p, g, m, v in ((kernel, grads[0], self.m_w, self.v_w), (bias, grads[1], self.m_b, self.v_b)):
            m.assign_add((g - m) * (1 - self.beta_1))
            v.assign_add((g * g - v) * (1 - self.beta_2))
            p.assign_sub(lr * m / (tf.sqrt(v) + self.epsilon))
        valid = tf.range(tf.shape(y)[0]) < tf.cast(n_real, tf.int32)
        reported = tf.minimum(per_sample, -math.log(MIN_PROB))  # as Keras reports it, clipped probabilities
        loss_sum = tf.reduce_sum(tf.where(valid, weights * reported, 0.0))
        correct = tf.reduce_sum(tf.cast(valid & (tf.argmax(logits, axis=1, output_type=tf.int32) == y), tf.int32))
        return loss_sum, correct, norm

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy without dropout (inference mode)."""
        return loss_and_accuracy(softmax(self._inputs(x) @ self.kernel.numpy() + self.bias.numpy()), y)

    def fit(self, x, y, epochs: int, batch_size: int = 32, initial_epoch: int = 0, class_weight: dict | None = None,
            validation_data: tuple | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
        """Train from epoch ``initial_epoch`` to ``epochs``, calling ``callbacks``' ``on_epoch_end`` with Keras's logs.

        Logs hold ``loss`` and ``accuracy`` (training batches, dropout on,
        class-weighted loss as Keras computes it) and, with
        ``validation_data``, ``val_loss`` and ``val_accuracy``. A callback
        setting ``model.stop_training`` ends training after that epoch.
        Callbacks overriding ``on_train_batch_end(step, logs)`` also get each
        step's ``loss`` and ``grad_norm`` (before clipping).
        """
        x, y = self._inputs(x), np.asarray(y, np.int32)
        n = len(y)
        weights = (np.array([class_weight[int(c)] for c in y], np.float32) if class_weight
                   else np.ones(n, np.float32))
        size = max(1, min(batch_size, n))
        batch_hooks = [cb for cb in callbacks if _has_batch_hook(cb)]
        self.head.stop_training = False
        for cb in callbacks:
            cb.set_model(self.head)
        for epoch in range(initial_epoch, epochs):
            # The order depends on (seed, epoch) alone, so a resumed run shuffles as the original did.
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            loss_sum, correct = tf.constant(0.0), tf.constant(0)
            for batch, start in enumerate(range(0, n, size)):
                idx = order[start:start + size]
                pad = size - len(idx)  # the last batch is padded, so one traced graph serves every step
                xb = np.pad(x[idx], ((0, pad), (0, 0)))
                yb, wb = np.pad(y[idx], (0, pad)), np.pad(weights[idx], (0, pad))
                batch_loss, batch_correct, norm = self._step(xb, yb, wb, tf.constant(len(idx), tf.float32))
                loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
                if batch_hooks:
                    self.last_grad_norm = float(norm)
                    step_logs = {"loss": float(batch_loss) / len(idx), "grad_norm": self.last_grad_norm}
                    for cb in batch_hooks:
                        cb.on_train_batch_end(batch, dict(step_logs))
            if n:
                self.last_grad_norm = float(norm)
            logs = {"loss": float(loss_sum) / max(n, 1), "accuracy": int(correct) / max(n, 1)}
            if validation_data is not None:
                logs["val_loss"], logs["val_accuracy"] = self.evaluate(*validation_data)
            for cb in callbacks:
                cb.on_epoch_end(epoch, dict(logs))
            if self.head.stop_training:
                break
