"""The head trainers' shared loop (tlcore.training.head_trainer): batches, class weights, logs and callbacks.

A stand-in trainer whose "step" only records what it was given shows what the loop hands a step and what it
makes of the step's answers; the real steps are checked in test_head_fit.py and test_tape_loop.py.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.core.test_head_fit import twin_heads
from tlcore.training.head_fit import HeadTrainer
from tlcore.training.head_trainer import BaseHeadTrainer
from tlcore.training.tape_loop import TapeTrainer


class RecordingTrainer(BaseHeadTrainer):
    """Visits examples in reverse order; each step answers (sum of its class weights, number of even labels)."""

    def __init__(self, head, step_logs=False):
        super().__init__(head, 1e-3)
        self.steps, self.events, self.report_steps = [], [], step_logs
        self.step_log_calls = 0

    def optimizer_arrays(self):
        return []

    def load_optimizer_arrays(self, arrays):
        pass

    def _dense_weights(self):
        return self.dense.get_weights()

    def _epoch_order(self, epoch, n):
        self.events.append(("order", epoch))
        return np.arange(n)[::-1]

    def _train_batch(self, x, y, weights, batch_size):
        self.steps.append((x[:, 0].tolist(), y.tolist(), weights.tolist(), batch_size))
        return float(weights.sum()), int((y % 2 == 0).sum())

    def _step_logs(self, batch_loss, n_batch):
        self.step_log_calls += 1
        return {"loss": batch_loss / n_batch} if self.report_steps else None

    def _epoch_done(self):
        self.events.append(("done", len(self.steps)))


class Watch(keras.callbacks.Callback):
    def __init__(self, events, stop_at=None):
        super().__init__()
        self.log, self.stop_at, self.seen = events, stop_at, []

    def set_model(self, model):
        super().set_model(model)
        self.log.append(("set_model", model.name))

    def on_train_batch_end(self, batch, logs=None):
        self.log.append(("batch", batch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.log.append(("epoch", epoch))
        self.seen.append(logs)
        if epoch == self.stop_at:
            self.model.stop_training = True


def features(n, dim=4):
    x = np.zeros((n, dim), np.float32)
    x[:, 0] = np.arange(n)  # column 0 names each example
    return x


def test_the_loop_batches_weighs_and_logs_as_keras_fit_does():
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    watch = Watch(trainer.events)
    trainer.fit(features(10), y, epochs=3, batch_size=4, initial_epoch=1, class_weight={0: 1.0, 1: 2.0, 2: 0.5},
                callbacks=[watch])
    # Epochs 1 and 2 only, each in the trainer's order, in batches of 4, 4 and the 2 left over.
    one_epoch = [([9.0, 8.0, 7.0, 6.0], [0, 2, 1, 0], [1.0, 0.5, 2.0, 1.0], 4),
                 ([5.0, 4.0, 3.0, 2.0], [2, 1, 0, 2], [0.5, 2.0, 1.0, 0.5], 4),
                 ([1.0, 0.0], [1, 0], [2.0, 1.0], 4)]
    assert trainer.steps == one_epoch * 2
    # The model is set first; each epoch is finished by the trainer before any callback sees it.
    assert trainer.events == [("set_model", head.name), ("order", 1), ("done", 3), ("epoch", 1),
                              ("order", 2), ("done", 6), ("epoch", 2)]
    # loss = summed step losses / n (here the class weights: 4 + 2 * 3 + 0.5 * 3); accuracy = right answers / n.
    assert watch.seen == [{"loss": 1.15, "accuracy": 0.7}] * 2


def test_a_batch_larger_than_the_data_is_one_batch_of_all_of_it():
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head)
    trainer.fit(features(3), [0, 1, 2], epochs=1, batch_size=32)
    assert trainer.steps == [([2.0, 1.0, 0.0], [2, 1, 0], [1.0, 1.0, 1.0], 3)]


def test_validation_data_adds_val_loss_and_val_accuracy_from_evaluate():
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head)
    x_val, y_val = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])
    watch = Watch([])
    trainer.fit(features(5), [0, 1, 2, 0, 1], epochs=1, validation_data=(x_val, y_val), callbacks=[watch])
    (logs,) = watch.seen
    assert (logs["val_loss"], logs["val_accuracy"]) == trainer.evaluate(x_val, y_val)
    probs = head.predict(x_val, verbose=0)  # evaluate is the head's own inference, dropout off
    assert logs["val_loss"] == pytest.approx(float(-np.log(probs[np.arange(6), y_val]).mean()), rel=1e-5)


def test_a_callback_stops_training_after_its_epoch():
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head)
    watch = Watch([], stop_at=1)
    trainer.fit(features(4), [0, 1, 2, 0], epochs=10, batch_size=2, callbacks=[watch])
    assert len(watch.seen) == 2 and len(trainer.steps) == 4
    trainer.fit(features(4), [0, 1, 2, 0], epochs=1, batch_size=2)  # a new fit starts afresh
    assert len(trainer.steps) == 6 and not head.stop_training


@pytest.mark.parametrize("reports", [False, True])
def test_step_logs_reach_batch_hooks_only_from_a_trainer_that_reports_them(reports):
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head, step_logs=reports)
    events = []
    trainer.fit(features(5), [0, 1, 2, 0, 1], epochs=1, batch_size=2, callbacks=[Watch(events)])
    batches = [e for e in events if e[0] == "batch"]
    assert batches == ([("batch", 0, {"loss": 1.0}), ("batch", 1, {"loss": 1.0}), ("batch", 2, {"loss": 1.0})]
                       if reports else [])


def test_step_logs_are_not_asked_for_when_no_callback_listens():
    # The tape trainer's step logs cost a sync with TensorFlow per step: nobody listening, nobody pays.
    head, _ = twin_heads(4, 3)
    trainer = RecordingTrainer(head, step_logs=True)
    epochs = []
    trainer.fit(features(5), [0, 1, 2, 0, 1], epochs=2, batch_size=2,
                callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))])
    assert epochs == [0, 1] and len(trainer.steps) == 6 and trainer.step_log_calls == 0


def test_both_head_trainers_run_the_shared_loop():
    for trainer_class in (HeadTrainer, TapeTrainer):
        assert issubclass(trainer_class, BaseHeadTrainer)
        assert not {"fit", "evaluate", "_inputs"} & set(vars(trainer_class))
