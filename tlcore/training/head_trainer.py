"""What phase 1's two head trainers share: the epoch loop, Keras's callback protocol and the head's maths.

Phase 1 trains the classifier head (optional standardisation, dropout, one
dense softmax layer) on cached embeddings. Two trainers do it:
:class:`tlcore.training.head_fit.HeadTrainer` (vectorised NumPy steps, the
default) and :class:`tlcore.training.tape_loop.TapeTrainer` (``tf.GradientTape``
steps, which can clip gradients). They differ in how one batch is stepped,
how an epoch is shuffled and where the weights live; everything around that
(batches, class weights, the logs Keras's ``fit`` gives, callbacks, stopping,
resuming at ``initial_epoch``) is :class:`BaseHeadTrainer`'s, so that the two
report the same things the same way.
"""
from __future__ import annotations

import abc
from typing import Sequence

import keras
import numpy as np

__all__ = ["BaseHeadTrainer", "softmax", "loss_and_accuracy", "MIN_PROB"]

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


def _has_batch_hook(callback) -> bool:
    # A step's logs can cost a sync with TensorFlow per step: only callbacks that listen are given them.
    return type(callback).on_train_batch_end is not keras.callbacks.Callback.on_train_batch_end


class BaseHeadTrainer(abc.ABC):
    """Trains ``head``'s dense layer (``head_dense``) with Adam, behind its dropout rate and optional standardisation.

    ``lr``, ``beta_1``, ``beta_2`` and ``epsilon`` are Keras's Adam settings.
    :meth:`fit` and :meth:`evaluate` are the same for every trainer; a
    subclass gives one training step on a batch (:meth:`_train_batch`), the
    order of an epoch's examples (:meth:`_epoch_order`), the dense layer's
    current weights (:meth:`_dense_weights`) and Adam's state for
    checkpoints (:meth:`optimizer_arrays`, :meth:`load_optimizer_arrays`).
    """

    label_dtype: type = np.int64  # the integer type of the labels the step receives

    def __init__(self, head: keras.Model, lr: float, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        self.head = head
        self.dense = head.get_layer("head_dense")
        self.rate = float(head.get_layer("head_dropout").rate)
        self.lr, self.beta_1, self.beta_2, self.epsilon = lr, beta_1, beta_2, epsilon
        try:
            mean, inv_std = head.get_layer("head_standardize").get_weights()
            self.standardize = (mean.astype(np.float32), inv_std.astype(np.float32))
        except ValueError:  # pretrained features need no standardisation
            self.standardize = None

    # Optimizer state, for checkpoints ---------------------------------------------------------
    @abc.abstractmethod
    def optimizer_arrays(self) -> list[np.ndarray]:
        """Adam's step count and moments, as arrays: ``[t, m_kernel, m_bias, v_kernel, v_bias]``."""

    @abc.abstractmethod
    def load_optimizer_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Restore what :meth:`optimizer_arrays` returned (weights come from the head itself).

        Raises :class:`ValueError` when the state is for a head of another shape.
        """

    # What each trainer does its own way -------------------------------------------------------
    @abc.abstractmethod
    def _dense_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The dense layer's kernel and bias as they are now, as NumPy arrays."""

    @abc.abstractmethod
    def _epoch_order(self, epoch: int, n: int) -> np.ndarray:
        """The order in which epoch ``epoch`` visits the ``n`` training examples (a permutation of ``range(n)``)."""

    @abc.abstractmethod
    def _train_batch(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray, batch_size: int):
        """One Adam step on a batch, dropout on; returns ``(loss_sum, correct)`` for the batch.

        ``x`` is already standardised, ``weights`` are the examples' class
        weights, and ``batch_size`` is the fit's (the last batch may be
        shorter). ``loss_sum`` is the class-weighted cross-entropy summed over
        the batch, as Keras reports it (probabilities clipped at
        :data:`MIN_PROB`), and ``correct`` the number of right answers, both
        measured before the step. They may be numbers or scalar tensors: the
        loop only adds them up and reads them once at the end of the epoch.
        """

    def _step_logs(self, batch_loss, n_batch: int) -> dict | None:
        """What callbacks' ``on_train_batch_end`` receive after a step, or None when this trainer reports no steps."""
        return None

    def _epoch_done(self) -> None:
        """Called after each epoch, before the callbacks see it (e.g. to hand the weights to the Keras head)."""

    # The shared part --------------------------------------------------------------------------
    def _inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.standardize is not None:  # constant during training: applied once, not at every step
            mean, inv_std = self.standardize
            x = (x - mean) * inv_std
        return x

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy without dropout (inference mode)."""
        kernel, bias = self._dense_weights()
        return loss_and_accuracy(softmax(self._inputs(x) @ kernel + bias), y)

    def fit(self, x, y, epochs: int, batch_size: int = 32, initial_epoch: int = 0, class_weight: dict | None = None,
            validation_data: tuple | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
        """Train from epoch ``initial_epoch`` to ``epochs``, calling ``callbacks``' ``on_epoch_end`` with Keras's logs.

        Logs hold ``loss`` and ``accuracy`` (training batches, dropout on,
        class-weighted loss as Keras computes it) and, with
        ``validation_data``, ``val_loss`` and ``val_accuracy``. A callback
        setting ``model.stop_training`` ends training after that epoch.
        Callbacks overriding ``on_train_batch_end(step, logs)`` also get each
        step's logs from a trainer that reports steps (the tape trainer's:
        ``loss`` and ``grad_norm``).
        """
        x, y = self._inputs(x), np.asarray(y, self.label_dtype)
        n = len(y)
        weights = (np.array([class_weight[int(c)] for c in y], np.float32) if class_weight
                   else np.ones(n, np.float32))
        size = max(1, min(batch_size, n))
        batch_hooks = [cb for cb in callbacks if _has_batch_hook(cb)]
        self.head.stop_training = False
        for cb in callbacks:
            cb.set_model(self.head)
        for epoch in range(initial_epoch, epochs):
            order = self._epoch_order(epoch, n)
            loss_sum, correct = 0.0, 0
            for batch, start in enumerate(range(0, n, size)):
                idx = order[start:start + size]
                batch_loss, batch_correct = self._train_batch(x[idx], y[idx], weights[idx], size)
                loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
                step_logs = self._step_logs(batch_loss, len(idx)) if batch_hooks else None
                if step_logs is not None:
                    for cb in batch_hooks:
                        cb.on_train_batch_end(batch, dict(step_logs))
            logs = {"loss": float(loss_sum) / max(n, 1), "accuracy": int(correct) / max(n, 1)}
            if validation_data is not None:
                logs["val_loss"], logs["val_accuracy"] = self.evaluate(*validation_data)
            self._epoch_done()
            for cb in callbacks:
                cb.on_epoch_end(epoch, dict(logs))
            if self.head.stop_training:
                break
