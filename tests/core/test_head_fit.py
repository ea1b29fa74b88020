"""The NumPy head trainer: the same model, loss and Adam steps as Keras's fit, without its overhead."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tlcore.training.head_fit import HeadTrainer
from tlcore.models.classifier import build_head
from tlcore.training.tape_loop import TapeTrainer


def blobs(n=60, dim=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y


def twin_heads(dim, classes, standardize=False, dropout=0.0):
    keras.utils.set_random_seed(7)
    a = build_head(dim, classes, dropout, standardize=standardize)
    b = build_head(dim, classes, dropout, standardize=standardize)
    b.set_weights(a.get_weights())
    return a, b


@pytest.mark.parametrize("class_weight", [None, {0: 1.0, 1: 3.0, 2: 0.5}])
@pytest.mark.parametrize("standardize", [False, True])
def test_full_batch_training_matches_keras_fit(class_weight, standardize):
    # One batch per epoch and no dropout: Keras's shuffling cannot matter, so both must take the same steps.
    x, y = blobs()
    x_val, y_val = blobs(20, seed=1)
    ours, theirs = twin_heads(x.shape[1], 3, standardize)
    if standardize:
        for head in (ours, theirs):
            head.get_layer("head_standardize").set_statistics(x * 5 + 2)
    theirs.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = theirs.fit(x, y, epochs=6, batch_size=len(y), class_weight=class_weight, validation_data=(x_val, y_val),
                         shuffle=False, verbose=0).history
    logs = []
    log_callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, l: logs.append(l))
    HeadTrainer(ours, 1e-2).fit(x, y, epochs=6, batch_size=len(y), class_weight=class_weight,
                                validation_data=(x_val, y_val), callbacks=[log_callback])
    for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_w, rtol=1e-4, atol=1e-5)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([entry[key] for entry in logs], history[key], rtol=1e-4, atol=1e-5)


def test_minibatches_with_dropout_learn_separable_classes():
    x, y = blobs(300)
    head, _ = twin_heads(x.shape[1], 3, dropout=0.3)
    trainer = HeadTrainer(head, 1e-2, seed=3)
    before = trainer.evaluate(x, y)
    trainer.fit(x, y, epochs=20, batch_size=32)
    loss, accuracy = trainer.evaluate(x, y)
    assert loss < before[0] and accuracy > 0.95
    probs = head.predict(x, verbose=0)  # the Keras head holds the trained weights
    assert (probs.argmax(axis=1) == y).mean() == pytest.approx(accuracy)


@pytest.mark.parametrize("trainer_class", [HeadTrainer, TapeTrainer], ids=["fit", "tape"])
def test_same_seed_same_result_other_seed_other_result(trainer_class):
    x, y = blobs(100)
    results = []
    for seed in (1, 1, 2):
        head, _ = twin_heads(x.shape[1], 3, dropout=0.2)
        trainer_class(head, 1e-2, seed=seed).fit(x, y, epochs=3, batch_size=16)
        results.append(head.get_weights()[0])
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.allclose(results[0], results[2])


def test_a_callback_can_stop_training():
    x, y = blobs()
    head, _ = twin_heads(x.shape[1], 3)
    epochs = []

    class StopAtTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)
            if epoch == 1:
                self.model.stop_training = True

    HeadTrainer(head, 1e-3).fit(x, y, epochs=10, callbacks=[StopAtTwo()])
    assert epochs == [0, 1]


def test_optimizer_state_round_trip_continues_exactly():
    x, y = blobs()
    straight, resumed = twin_heads(x.shape[1], 3)
    HeadTrainer(straight, 1e-2).fit(x, y, epochs=5, batch_size=len(y))

    first = HeadTrainer(resumed, 1e-2)
    first.fit(x, y, epochs=2, batch_size=len(y))
    saved_weights, saved_state = resumed.get_weights(), [a.copy() for a in first.optimizer_arrays()]
    keras.utils.set_random_seed(99)
    fresh = build_head(x.shape[1], 3, 0.0)
    fresh.set_weights(saved_weights)
    second = HeadTrainer(fresh, 1e-2)
    second.load_optimizer_arrays(saved_state)
    second.fit(x, y, epochs=5, batch_size=len(y), initial_epoch=2)
    for a, b in zip(straight.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_optimizer_state_for_another_shape_is_refused():
    x, y = blobs()
    head, _ = twin_heads(x.shape[1], 3)
    other = HeadTrainer(build_head(5, 2), 1e-3)
    with pytest.raises(ValueError, match="shape"):
        HeadTrainer(head, 1e-3).load_optimizer_arrays(other.optimizer_arrays())
