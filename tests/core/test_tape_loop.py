"""The GradientTape head trainer: HeadTrainer's maths step by step, gradient clipping, exact resume, few-shot runs."""
from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

import tlcore.training.frozen as frozen_mod
from tests.conftest import SMALL_INPUT, make_image_folder
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tests.core.test_finetune import mean_colour_backbone
from tests.core.test_head_fit import blobs, twin_heads
from tlcore.training.checkpoint import checkpoint_dir, load_checkpoint
from tlcore.io.errors import TLError
from tlcore.training.head_fit import HeadTrainer
from tlcore.models.classifier import build_head
from tlcore.training.tape_loop import TapeTrainer
from tlcore.training.config import TrainConfig
from tlcore.training.pipeline import train


def epoch_logs():
    logs = []
    return logs, keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, l: logs.append(l))


@pytest.fixture
def colour_backbone(monkeypatch):
    """Features = mean RGB: the colour classes are clearly separable even from a handful of photos."""
    monkeypatch.setattr(frozen_mod, "create_backbone", mean_colour_backbone)


# The loop itself ------------------------------------------------------------------------------------

@pytest.mark.parametrize("class_weight", [None, {0: 1.0, 1: 3.0, 2: 0.5}])
@pytest.mark.parametrize("standardize", [False, True])
def test_full_batch_steps_match_the_numpy_trainer(class_weight, standardize):
    # One batch per epoch and no dropout: shuffling cannot matter, so both loops must take the same Adam steps
    # (HeadTrainer itself is checked against Keras's fit in test_head_fit.py).
    x, y = blobs()
    x_val, y_val = blobs(20, seed=1)
    theirs, ours = twin_heads(x.shape[1], 3, standardize)
    if standardize:
        for head in (theirs, ours):
            head.get_layer("head_standardize").set_statistics(x * 5 + 2)
    their_logs, their_cb = epoch_logs()
    our_logs, our_cb = epoch_logs()
    HeadTrainer(theirs, 1e-2).fit(x, y, epochs=6, batch_size=len(y), class_weight=class_weight,
                                  validation_data=(x_val, y_val), callbacks=[their_cb])
    TapeTrainer(ours, 1e-2).fit(x, y, epochs=6, batch_size=len(y), class_weight=class_weight,
                                validation_data=(x_val, y_val), callbacks=[our_cb])
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([entry[key] for entry in our_logs], [entry[key] for entry in their_logs],
                                   rtol=1e-5, atol=1e-6)


def test_minibatches_with_dropout_learn_separable_classes():
    x, y = blobs(300)
    head, _ = twin_heads(x.shape[1], 3, dropout=0.3)
    trainer = TapeTrainer(head, 1e-2, seed=3)
    before = trainer.evaluate(x, y)
    logs, callback = epoch_logs()
    trainer.fit(x, y, epochs=15, batch_size=32, callbacks=[callback])
    loss, accuracy = trainer.evaluate(x, y)
    assert loss < before[0] / 5 and accuracy > 0.95
    assert logs[-1]["loss"] < logs[0]["loss"] and logs[-1]["accuracy"] > 0.9
    probs = head.predict(x, verbose=0)  # the Keras head's own variables were trained
    assert (probs.argmax(axis=1) == y).mean() == pytest.approx(accuracy)


def test_class_weights_weigh_each_images_loss():
    # Epoch 1 is one full batch, whose loss is measured before its step: the initial weighted cross-entropy.
    x, y = blobs()
    class_weight = {0: 2.0, 1: 0.5, 2: 1.0}
    head, _ = twin_heads(x.shape[1], 3)
    p = head.predict(x, verbose=0)
    per_image = -np.log(p[np.arange(len(y)), y])
    losses = {}
    for name, weights in (("none", None), ("weighted", class_weight), ("doubled", {c: 2.0 for c in range(3)})):
        head, _ = twin_heads(x.shape[1], 3)
        logs, callback = epoch_logs()
        TapeTrainer(head, 1e-2).fit(x, y, epochs=1, batch_size=len(y), class_weight=weights, callbacks=[callback])
        losses[name] = logs[0]["loss"]
    expected = np.mean([class_weight[int(c)] for c in y] * per_image)
    assert losses["weighted"] == pytest.approx(expected, rel=1e-5)
    assert losses["none"] == pytest.approx(per_image.mean(), rel=1e-5)
    assert losses["doubled"] == pytest.approx(2 * losses["none"], rel=1e-6)


def test_a_zero_class_weight_leaves_that_class_out_of_the_gradient():
    # Only class 0's images count: its bias must rise, and a model trained on them alone must end the same.
    x, y = blobs()
    only_zero = {0: 1.0, 1: 0.0, 2: 0.0}
    weighted, _ = twin_heads(x.shape[1], 3)
    TapeTrainer(weighted, 1e-2).fit(x, y, epochs=5, batch_size=len(y), class_weight=only_zero)
    alone, _ = twin_heads(x.shape[1], 3)
    keep = y == 0
    # Same loss up to the constant batch-size factor, which Adam's normalisation cancels (epsilon aside).
    TapeTrainer(alone, 1e-2).fit(x[keep], y[keep], epochs=5, batch_size=int(keep.sum()))
    np.testing.assert_allclose(weighted.get_weights()[0], alone.get_weights()[0], atol=1e-4)
    bias = weighted.get_weights()[1]
    assert bias[0] > bias[1] and bias[0] > bias[2]


# Gradient clipping ----------------------------------------------------------------------------------

def spike_then_learn(clip_norm):
    """One step on hugely scaled features (an exploding gradient), then ordinary full-batch training."""
    x, y = blobs(120)
    head, _ = twin_heads(x.shape[1], 3)
    trainer = TapeTrainer(head, 1e-2, clip_norm=clip_norm)
    trainer.fit(x[:8] * 1e4, y[:8], epochs=1, batch_size=8)
    spike = trainer.last_grad_norm, [a.copy() for a in trainer.optimizer_arrays()]
    trainer.fit(x, y, epochs=20, batch_size=len(y))
    return spike, trainer.evaluate(x, y)


def test_clipping_bounds_what_a_huge_gradient_does():
    (norm, state), (loss, accuracy) = spike_then_learn(None)
    (clipped_norm, clipped_state), (clipped_loss, clipped_accuracy) = spike_then_learn(1.0)
    # The step's own gradient is huge either way (the reported norm is taken before clipping) ...
    assert norm == pytest.approx(clipped_norm, rel=1e-5) and norm > 1e3
    # ... but Adam's first moment after one step is (1 - beta_1) times the gradient it was given.
    first_moment = np.sqrt(sum(float((m ** 2).sum()) for m in state[1:3]))
    clipped_moment = np.sqrt(sum(float((m ** 2).sum()) for m in clipped_state[1:3]))
    assert first_moment == pytest.approx(0.1 * norm, rel=1e-3)
    assert clipped_moment == pytest.approx(0.1 * 1.0, rel=1e-3)
    # Unclipped, the spike stays in Adam's moments and stalls the training that follows; clipped, it learns.
    assert clipped_accuracy > 0.95 and accuracy < 0.85
    assert clipped_loss < loss / 5


def test_a_clip_norm_above_every_gradient_changes_nothing():
    x, y = blobs()
    plain, loose = twin_heads(x.shape[1], 3, dropout=0.2)
    TapeTrainer(plain, 1e-2, seed=4).fit(x, y, epochs=3, batch_size=16)
    TapeTrainer(loose, 1e-2, seed=4, clip_norm=1e9).fit(x, y, epochs=3, batch_size=16)
    for a, b in zip(plain.get_weights(), loose.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_bad_clip_norm_is_a_user_error(bad):
    head, _ = twin_heads(4, 2)
    with pytest.raises(TLError) as info:
        TapeTrainer(head, 1e-3, clip_norm=bad)
    assert repr(bad) in str(info.value)


# Steps, stopping and resuming -----------------------------------------------------------------------

def test_batch_hooks_see_every_step_and_a_callback_can_stop_training():
    x, y = blobs()  # 60 images in batches of 16: 4 steps per epoch, the last one padded
    head, _ = twin_heads(x.shape[1], 3)
    steps, epochs = [], []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append((batch, logs))

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)
            if epoch == 1:
                self.model.stop_training = True

    trainer = TapeTrainer(head, 1e-3, clip_norm=0.5)
    trainer.fit(x, y, epochs=10, batch_size=16, callbacks=[Watch()])
    assert epochs == [0, 1]
    assert [batch for batch, _ in steps] == [0, 1, 2, 3] * 2
    assert all(np.isfinite(logs["loss"]) and logs["grad_norm"] > 0 for _, logs in steps)
    assert int(trainer.optimizer_arrays()[0]) == 8
    assert trainer.last_grad_norm == steps[-1][1]["grad_norm"]


def test_optimizer_state_round_trip_continues_exactly_even_with_dropout():
    # Shuffling depends on (seed, epoch) and dropout masks on (seed, step): a resumed run repeats the original.
    x, y = blobs()
    straight, resumed = twin_heads(x.shape[1], 3, dropout=0.3)
    TapeTrainer(straight, 1e-2, seed=5).fit(x, y, epochs=5, batch_size=16)

    first = TapeTrainer(resumed, 1e-2, seed=5)
    first.fit(x, y, epochs=2, batch_size=16)
    saved_weights, saved_state = resumed.get_weights(), [a.copy() for a in first.optimizer_arrays()]
    keras.utils.set_random_seed(99)
    fresh = build_head(x.shape[1], 3, 0.3)
    fresh.set_weights(saved_weights)
    second = TapeTrainer(fresh, 1e-2, seed=5)
    second.load_optimizer_arrays(saved_state)
    second.fit(x, y, epochs=5, batch_size=16, initial_epoch=2)
    for a, b in zip(straight.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_optimizer_state_is_interchangeable_with_the_numpy_trainers():
    x, y = blobs()
    straight, switched = twin_heads(x.shape[1], 3)
    HeadTrainer(straight, 1e-2).fit(x, y, epochs=5, batch_size=len(y))
    numpy_trainer = HeadTrainer(switched, 1e-2)
    numpy_trainer.fit(x, y, epochs=2, batch_size=len(y))
    tape_trainer = TapeTrainer(switched, 1e-2)
    tape_trainer.load_optimizer_arrays(numpy_trainer.optimizer_arrays())
    tape_trainer.fit(x, y, epochs=5, batch_size=len(y), initial_epoch=2)
    for a, b in zip(straight.get_weights(), switched.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_state_for_another_shape_is_refused():
    head, _ = twin_heads(12, 3)
    other = TapeTrainer(build_head(5, 2), 1e-3)
    with pytest.raises(ValueError, match="shape"):
        TapeTrainer(head, 1e-3).load_optimizer_arrays(other.optimizer_arrays())


# Through train() and the CLI: five photos per class ---------------------------------------------------

def test_few_shot_training_with_the_tape_loop(tmp_path, colour_backbone):
    data = make_image_folder(tmp_path / "data", n_per_class=5)
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, loop="tape", clip_norm=1.0, epochs=40, lr=1e-2)
    summary = train(data, config, out=tmp_path / "run")
    # Five per class: one validation and one test image each, three to train on.
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (6, 2, 2)
    assert [h["epoch"] for h in summary["history"]] == list(range(1, 41))
    assert all(h["phase"] == "head" and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(h)
               for h in summary["history"])
    assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]
    assert summary["val_accuracy"] == 1.0 and summary["test_accuracy"] == 1.0  # red and blue are easy
    codes = {w["code"]: w["message"] for w in summary["warnings"]}
    assert "few_images" in codes  # 3 training images per class
    assert "only 2 validation and 2 test images" in codes["few_held_out"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["loop"] == "tape" and saved["clip_norm"] == 1.0


def test_larger_held_out_splits_do_not_warn(tmp_path, colour_backbone):
    data = make_image_folder(tmp_path / "data", n_per_class=3, splits=["train"])
    make_image_folder(data, n_per_class=8, splits=["val", "test"], seed=1)
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, loop="tape", epochs=1))
    assert (summary["n_val"], summary["n_test"]) == (16, 16)
    assert "few_held_out" not in {w["code"] for w in summary["warnings"]}


def test_few_shot_tape_run_resumes_exactly_after_a_crash(tmp_path, colour_backbone):
    class Crash(Exception):
        pass

    data = make_image_folder(tmp_path / "data", n_per_class=5)
    config = TrainConfig(weights=None, input_size=SMALL_INPUT, loop="tape", clip_norm=1.0, epochs=6, lr=1e-2, dropout=0.3, seed=2)
    straight = train(data, config)

    def crash_at_four(epoch, logs):
        if epoch == 4:
            raise Crash()

    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(data, config, out=out, on_epoch=crash_at_four)
    assert load_checkpoint(checkpoint_dir(out)).epochs_done == 3
    with pytest.raises(TLError, match=r"clip_norm 1\.0, not 2\.0"):  # a resume must use the same clipping
        train(data, replace(config, clip_norm=2.0), out=out, resume=True)
    resumed = train(data, config, out=out, resume=True)
    assert len(resumed["history"]) == len(straight["history"]) == 6
    for ours, theirs in zip(resumed["history"], straight["history"]):
        assert ours.keys() == theirs.keys()
        assert all(ours[k] == pytest.approx(theirs[k], rel=1e-5, abs=1e-6) for k in ours if k != "phase")


@pytest.mark.parametrize("changes, shown", [
    ({"loop": "sgd"}, "'sgd'"),
    ({"loop": "tape", "clip_norm": -1.0}, "-1.0"),
    ({"loop": "tape", "clip_norm": float("nan")}, "nan"),
    ({"clip_norm": 1.0}, "tape"),  # clipping needs the tape loop
])
def test_bad_loop_settings_fail_before_any_work(image_folder, monkeypatch, changes, shown):
    built = []
    monkeypatch.setattr(frozen_mod, "create_backbone", lambda *a, **k: built.append(a))
    with pytest.raises(TLError) as info:
        train(image_folder, TrainConfig(weights=None, input_size=SMALL_INPUT, **changes))
    assert shown in str(info.value) and "\n" not in str(info.value)
    assert built == []


def test_cli_tape_loop_with_clipping(tmp_path, colour_backbone):
    data = make_image_folder(tmp_path / "data", n_per_class=5)
    code, stdout, stderr = run_cli(["train", data, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT), "--epochs", "3",
                                    "--loop", "tape", "--clip-norm", "1.0", "--json"])
    assert code == 0, stderr
    summary = last_json(stdout)
    assert len(summary["history"]) == 3 and summary["n_val"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["loop"] == "tape" and saved["clip_norm"] == 1.0


def test_cli_bad_loop_and_clip_norm_exit_2(image_folder, tmp_path):
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--loop", "sgd"]),
                      "--loop", "'sgd'")
    assert_user_error(*run_cli(["train", image_folder, "--out", tmp_path / "run", "--weights", "none", "--input-size", str(SMALL_INPUT),
                                "--loop", "tape", "--clip-norm", "0"]), "clipping", "0.0")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_five_real_photos_per_class_generalise(hymenoptera, tmp_path, lite0_engine_cached):
    # Five ants and five bees (three of each to train on) with ImageNet features: the shared validation
    # photos, never seen, are mostly right (about 0.9 when written).
    from tlcore.models.run import load_run

    pairs = [(str(p), label) for label in ("ants", "bees")
             for p in sorted((hymenoptera / "train" / label).iterdir())[:5]]
    summary = train(pairs, TrainConfig(loop="tape", clip_norm=1.0, epochs=30), out=tmp_path / "run")
    assert summary["n_train"] == 6 and len(summary["history"]) == 30
    val = [(p, label) for label in ("ants", "bees") for p in sorted((hymenoptera / "val" / label).iterdir())]
    run = load_run(tmp_path / "run")
    probs, kept, _ = run.predict_files([str(p) for p, _ in val])
    y = np.array([run.classes.index(val[i][1]) for i in kept])
    assert len(y) > 100 and float((probs.argmax(axis=1) == y).mean()) > 0.8
