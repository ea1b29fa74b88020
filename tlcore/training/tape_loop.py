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
several times faster. The epoch loop and the callbacks are
:class:`tlcore.training.head_trainer.BaseHeadTrainer`'s; this module is the
TensorFlow step.
"""
from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from ..io.errors import TLError
from .head_trainer import MIN_PROB, BaseHeadTrainer

__all__ = ["TapeTrainer", "check_clip_norm"]


def check_clip_norm(clip_norm) -> None:
    """Raise :class:`TLError` unless ``clip_norm`` is None or a positive finite number."""
    if clip_norm is None:
        return
    ok = isinstance(clip_norm, (int, float)) and not isinstance(clip_norm, bool)
    if not (ok and math.isfinite(clip_norm) and clip_norm > 0):
        raise TLError(f"gradient clipping norm must be a positive number, got {clip_norm!r}")


class TapeTrainer(BaseHeadTrainer):
    """Adam on ``head``'s dense layer (``head_dense``) with ``tf.GradientTape``, optionally clipping gradients.

    Drop-in for :class:`tlcore.training.head_fit.HeadTrainer`: same constructor
    settings (``lr``, ``seed``, Keras's Adam ``beta_1``, ``beta_2``,
    ``epsilon``), same :meth:`fit`, :meth:`evaluate` and optimizer-state
    methods. ``clip_norm``, when set, rescales each step's gradients so
    their global norm is at most ``clip_norm`` before Adam sees them.
    ``last_grad_norm`` is the last step's global gradient norm before
    clipping. Callbacks overriding ``on_train_batch_end`` get each step's
    ``loss`` and ``grad_norm``.
    """

    label_dtype = np.int32  # the traced step compares labels with tf.argmax's int32

    def __init__(self, head: keras.Model, lr: float, seed: int = 0, clip_norm: float | None = None,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        check_clip_norm(clip_norm)
        super().__init__(head, float(lr), beta_1, beta_2, epsilon)
        self.kernel, self.bias = self.dense.kernel, self.dense.bias
        self.seed, self.clip_norm = int(seed), None if clip_norm is None else float(clip_norm)
        self.last_grad_norm: float | None = None
        self._norm = None  # the last step's gradient norm, a tensor read only when someone asks for it
        self.t = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step")
        self.m_w, self.v_w = (tf.Variable(tf.zeros(self.kernel.shape), trainable=False) for _ in range(2))
        self.m_b, self.v_b = (tf.Variable(tf.zeros(self.bias.shape), trainable=False) for _ in range(2))
        # Every batch is padded to one shape (see _train_batch), so this traces once per batch size and feature size.
        self._step = tf.function(self._tf_step)

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
    def _dense_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.kernel.numpy(), self.bias.numpy()

    def _tf_step(self, x, y, weights, n_real):
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

    def _epoch_order(self, epoch: int, n: int) -> np.ndarray:
        # The order depends on (seed, epoch) alone, so a resumed run shuffles as the original did.
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _train_batch(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray, batch_size: int):
        # Tensors, not numbers: reading them back from TensorFlow would cost a sync at every step.
        n_real = len(y)
        pad = batch_size - n_real  # the last batch is padded, so one traced graph serves every step
        x = np.pad(x, ((0, pad), (0, 0)))
        y, weights = np.pad(y, (0, pad)), np.pad(weights, (0, pad))
        loss_sum, correct, self._norm = self._step(x, y, weights, tf.constant(n_real, tf.float32))
        return loss_sum, correct

    def _step_logs(self, batch_loss, n_batch: int) -> dict:
        self.last_grad_norm = float(self._norm)
        return {"loss": float(batch_loss) / n_batch, "grad_norm": self.last_grad_norm}

    def _epoch_done(self) -> None:
        if self._norm is not None:  # None when the epoch had no steps (no training data)
            self.last_grad_norm = float(self._norm)
            self._norm = None
