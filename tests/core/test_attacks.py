"""Adversarial attacks (tlcore.adversarial.attacks) on a tiny classifier: bounds, direction, strength, validation.

The model is built like a Transfer Lab run (``build_classifier`` of a backbone and a standardise +
dropout + dense softmax head) on the small stand-in backbone of test_finetune at 32x32, with its head trained on
generated red / green / blue images so that it classifies them correctly: the attacks then have
something to break. Built once per module (a few seconds).
"""
from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS
from tests.core.test_finetune import lite0_standin
from tlcore.adversarial.attacks import (METHODS, PIXEL_RANGE, AttackConfig, attack, attack_image, fgsm, pgd,
                                        robustness_curve, to_uint8_within)
from tlcore.io.errors import TLError
from tlcore.models.classifier import build_classifier, build_head, logits_function

SIZE = 32
CLASSES = ["red", "green", "blue"]
TARGET = CLASSES.index("green")

# Every attack the module offers, as AttackConfig fields: FGSM, PGD from a random start, PGD from the image.
METHOD_CASES = {
    "fgsm": {"method": "fgsm"},
    "pgd-random-start": {"method": "pgd", "random_start": True},
    "pgd-no-random-start": {"method": "pgd", "random_start": False},
}


def generated(n_per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Noisy solid-colour images as the models take them (float pixels with 8-bit values), and labels.

    The noise saturates some pixels at 0 and 255, so clipping to the pixel range is exercised.
    """
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(n_per_class):
            noisy = np.array(CLASS_COLOURS[name])[None, None, :] + rng.normal(0, 30, (SIZE, SIZE, 3))
            xs.append(np.clip(noisy, 0, 255).astype(np.uint8))
            ys.append(label)
    return np.stack(xs).astype(np.float32), np.asarray(ys)


def tiny_classifier(seed: int = 7) -> tuple[keras.Model, keras.Model]:
    """``(classifier, backbone)``: the stand-in backbone at 32x32 and a head trained on generated images.

    The head is trained with a few epochs of Adam on 30 images a class: held-out images of the three
    colours are classified correctly, with probabilities around 0.8 rather than saturated at 1.0 (so
    that the attacks' changes are measurable). Also used by test_cli_attack.
    """
    keras.utils.set_random_seed(seed)
    net = lite0_standin("efficientnet_lite0", weights=None, input_shape=(SIZE, SIZE, 3))
    # Structured as `train --weights none` builds it (so that a run saved with it reloads), with the
    # standardisation left at its identity statistics: the stand-in's features need none.
    head = build_head(1280, len(CLASSES), 0.2, standardize=True)
    model = build_classifier(net, head)
    x_train, y_train = generated(30, np.random.default_rng(seed))
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    head.fit(np.asarray(net(x_train, training=False)), y_train, epochs=20, batch_size=12, verbose=0)
    return model, net


@pytest.fixture(scope="module")
def tiny():
    """The tiny classifier, its logits function and held-out images it classifies correctly."""
    import tensorflow as tf

    model, net = tiny_classifier()
    x, y = generated(6, np.random.default_rng(8))
    logits = logits_function(model)
    assert (np.asarray(logits(x)).argmax(axis=1) == y).all(), "the tiny model must classify its images correctly"

    def log_probs(images):
        return np.asarray(tf.nn.log_softmax(logits(tf.convert_to_tensor(np.asarray(images, np.float32)))))

    return SimpleNamespace(model=model, net=net, logits=logits, x=x, y=y, log_probs=log_probs)


def run(tiny, case: str, epsilon: float, target: int | None = None, **extra) -> np.ndarray:
    config = AttackConfig(**{"steps": 10, **METHOD_CASES[case], **extra}, epsilon=epsilon, target=target)
    return attack(tiny.logits, tiny.x, tiny.y, config, n_classes=len(CLASSES))


def linf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image L-infinity distance in pixel levels, computed exactly (float64)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return d.reshape(len(d), -1).max(axis=1)


def true_class_loss(tiny, images) -> np.ndarray:
    return -tiny.log_probs(images)[np.arange(len(tiny.y)), tiny.y]


# The model the attacks see ------------------------------------------------------------------------

def test_logits_function_softmax_is_the_models_output(tiny):
    import tensorflow as tf

    probs = tiny.model.predict(tiny.x, verbose=0)
    np.testing.assert_allclose(np.asarray(tf.nn.softmax(tiny.logits(tiny.x))), probs, rtol=0, atol=1e-6)
    assert (np.asarray(tiny.logits(tiny.x)).argmax(axis=1) == probs.argmax(axis=1)).all()


def test_logits_function_of_a_standardised_head_with_dropout(tiny):
    # As `train --weights none` builds it: Standardize, Dropout (skipped: inference), Dense softmax.
    import tensorflow as tf

    head = build_head(1280, len(CLASSES), 0.5, standardize=True)
    model = build_classifier(tiny.net, head)
    head.get_layer("head_standardize").set_statistics(np.asarray(tiny.net(tiny.x, training=False)))
    kernel = head.get_layer("head_dense").kernel
    kernel.assign(np.random.default_rng(0).normal(0, 0.03, kernel.shape).astype(np.float32))
    logits = logits_function(model)
    probs = model.predict(tiny.x, verbose=0)
    assert probs.max() < 0.999  # not saturated: the comparison means something
    np.testing.assert_allclose(np.asarray(tf.nn.softmax(logits(tiny.x))), probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(logits(tiny.x)), np.asarray(logits(tiny.x)))  # no dropout


def test_logits_function_refuses_a_model_without_the_head():
    inputs = keras.Input(shape=(4,))
    plain = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(TLError, match="not a Transfer Lab classifier"):
        logits_function(plain)


# Bounds: within epsilon of the original and within the pixel range, for every attack -------------

@pytest.mark.parametrize("target", [None, TARGET], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("case", list(METHOD_CASES))
@pytest.mark.parametrize("epsilon", [0.0123, 0.03, 0.5])
def test_adversarial_images_stay_within_epsilon_and_the_pixel_range(tiny, case, target, epsilon):
    adv = run(tiny, case, epsilon, target)
    assert adv.shape == tiny.x.shape and adv.dtype == np.float32
    assert np.isfinite(adv).all()
    # Never beyond epsilon (no tolerance), and valid pixels.
    assert linf(adv, tiny.x).max() <= epsilon * PIXEL_RANGE
    assert adv.min() >= 0.0 and adv.max() <= 255.0
    # The attack did use its budget, up to the ball's edge (a thousandth of a level inside it).
    assert linf(adv, tiny.x).max() >= epsilon * PIXEL_RANGE - 0.01
    if epsilon == 0.5:  # half the range: only the clipping at 0 and 255 keeps pixels valid
        assert adv.min() == 0.0 and adv.max() == 255.0


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_bound_holds_with_a_large_step_size_and_one_step(tiny, case):
    # PGD steps of the whole range must still be projected back; FGSM ignores both settings.
    adv = run(tiny, case, 0.02, step_size=1.0)
    assert linf(adv, tiny.x).max() <= 0.02 * PIXEL_RANGE
    adv = run(tiny, case, 0.02, steps=1)
    assert linf(adv, tiny.x).max() <= 0.02 * PIXEL_RANGE
    assert adv.min() >= 0.0 and adv.max() <= 255.0


@pytest.mark.parametrize("target", [None, TARGET], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_epsilon_zero_leaves_the_images_unchanged(tiny, case, target):
    np.testing.assert_array_equal(run(tiny, case, 0.0, target), tiny.x)
    np.testing.assert_array_equal(run(tiny, case, 0.0, target, step_size=0.1), tiny.x)


# Direction: untargeted climbs the true class's loss, targeted the target's probability -----------

@pytest.mark.parametrize("case", list(METHOD_CASES))
@pytest.mark.parametrize("epsilon", [0.005, 0.03])
def test_untargeted_attack_raises_the_true_class_loss(tiny, case, epsilon):
    adv = run(tiny, case, epsilon)
    before, after = true_class_loss(tiny, tiny.x), true_class_loss(tiny, adv)
    assert after.mean() > before.mean()
    assert (after >= before).mean() >= 0.9  # and for (nearly) every image, not just on average
    true_prob = lambda images: np.exp(-true_class_loss(tiny, images)).mean()
    assert true_prob(adv) < true_prob(tiny.x)


@pytest.mark.parametrize("case", list(METHOD_CASES))
@pytest.mark.parametrize("epsilon", [0.005, 0.03])
def test_targeted_attack_raises_the_target_probability(tiny, case, epsilon):
    adv = run(tiny, case, epsilon, TARGET)
    others = tiny.y != TARGET
    before, after = tiny.log_probs(tiny.x)[others, TARGET], tiny.log_probs(adv)[others, TARGET]
    assert after.mean() > before.mean()
    assert (after >= before).mean() >= 0.9
    assert np.exp(after).mean() > np.exp(before).mean()
    # It pushes towards the chosen class, not just away from the true one: the other wrong class
    # gains less log-probability than the target does.
    third = 3 - TARGET - tiny.y[others]  # the class that is neither the true one nor the target
    gain_other = tiny.log_probs(adv)[others][np.arange(others.sum()), third] - \
        tiny.log_probs(tiny.x)[others][np.arange(others.sum()), third]
    assert (after - before).mean() > gain_other.mean()


def test_targeted_attack_at_a_larger_epsilon_reaches_the_target(tiny):
    adv = run(tiny, "pgd-random-start", 0.1, TARGET, steps=20)
    others = tiny.y != TARGET
    pred = np.asarray(tiny.logits(adv)).argmax(axis=1)
    assert (pred[others] == TARGET).mean() >= 0.5


@pytest.mark.parametrize("epsilon", [0.01, 0.03])
def test_pgd_is_at_least_as_strong_as_fgsm(tiny, epsilon):
    fgsm_adv = run(tiny, "fgsm", epsilon)
    for case in ("pgd-random-start", "pgd-no-random-start"):
        pgd_adv = run(tiny, case, epsilon)
        assert true_class_loss(tiny, pgd_adv).mean() >= true_class_loss(tiny, fgsm_adv).mean()
        accuracy = lambda images: (np.asarray(tiny.logits(images)).argmax(axis=1) == tiny.y).mean()
        assert accuracy(pgd_adv) <= accuracy(fgsm_adv)
    # Targeted too: PGD brings the target at least as close as FGSM does.
    others = tiny.y != TARGET
    target_logp = lambda images: tiny.log_probs(images)[others, TARGET].mean()
    pgd_targeted, fgsm_targeted = run(tiny, "pgd-random-start", epsilon, TARGET), run(tiny, "fgsm", epsilon, TARGET)
    assert target_logp(pgd_targeted) >= target_logp(fgsm_targeted)


def test_fgsm_and_pgd_functions_match_the_dispatcher(tiny):
    np.testing.assert_array_equal(fgsm(tiny.logits, tiny.x, tiny.y, 0.02),
                                  attack(tiny.logits, tiny.x, tiny.y, AttackConfig("fgsm", 0.02), 3))
    np.testing.assert_array_equal(pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=3, seed=5),
                                  attack(tiny.logits, tiny.x, tiny.y, AttackConfig("pgd", 0.02, steps=3, seed=5), 3))


def test_pgd_random_start_is_seeded(tiny):
    a = pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=2, seed=1)
    assert np.array_equal(a, pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=2, seed=1))
    assert not np.array_equal(a, pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=2, seed=2))
    # Without a random start the seed plays no part.
    assert np.array_equal(pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=2, random_start=False, seed=1),
                          pgd(tiny.logits, tiny.x, tiny.y, 0.02, steps=2, random_start=False, seed=2))


# 8-bit rounding that keeps the promise -------------------------------------------------------------

@pytest.mark.parametrize("epsilon", [0.0, 1 / 255, 2 / 255, 0.0123, 0.03, 0.5])
def test_to_uint8_within_stays_within_floor_epsilon_of_the_original(epsilon):
    rng = np.random.default_rng(3)
    original = rng.integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    eps_px = epsilon * 255
    # Floats anywhere in the ball (and clipped to the range), as an attack returns them.
    adversarial = np.clip(original + rng.uniform(-eps_px, eps_px, original.shape), 0, 255).astype(np.float32)
    rounded = to_uint8_within(adversarial, original, epsilon)
    assert rounded.dtype == np.uint8 and rounded.shape == original.shape
    distance = np.abs(rounded.astype(np.int64) - original.astype(np.int64))
    assert distance.max() <= np.floor(eps_px + 1e-6)
    assert distance.max() <= eps_px  # so within epsilon itself
    # Where rounding to the nearest level stays in the ball, that is what it does.
    nearest = np.rint(adversarial)
    inside = np.abs(nearest - original) <= np.floor(eps_px + 1e-6)
    np.testing.assert_array_equal(rounded[inside], nearest[inside].astype(np.uint8))


def test_to_uint8_within_pulls_rounding_back_into_the_ball():
    original = np.array([[100, 0, 255]], np.uint8)
    # 0.03 * 255 = 7.65 levels: 107.6 would round to 108, one level too far.
    rounded = to_uint8_within(np.array([[107.6, 0.0, 247.4]], np.float32), original, 0.03)
    np.testing.assert_array_equal(rounded, [[107, 0, 248]])
    # Exactly integral budgets (3 levels) are not lost to floating point (3/255*255 = 2.9999...).
    np.testing.assert_array_equal(to_uint8_within(np.array([[103.0, 3.0, 252.0]]), original, 3 / 255),
                                  [[103, 3, 252]])


@pytest.mark.parametrize("epsilon", [0.002, 0.004, 0.0123, 0.03])
def test_to_uint8_within_a_float_original_stays_within_epsilon(epsilon):
    # A float original (say, resized in float): the bounds are not levels, so rounding to the nearest
    # level inside the ball must not truncate past it.
    rng = np.random.default_rng(4)
    original = rng.uniform(0, 255, (2, 16, 16, 3))
    eps_px = epsilon * 255
    adversarial = np.clip(original + rng.choice([-eps_px, eps_px], original.shape), 0, 255)
    rounded = to_uint8_within(adversarial, original, epsilon)
    assert np.abs(rounded - original).max() <= eps_px
    np.testing.assert_array_equal(to_uint8_within(np.array([92.0, 109.0]), np.array([100.6, 100.4]), 0.004),
                                  [100, 101])


@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float"])
def test_attack_image_gives_an_8bit_image_within_epsilon(tiny, as_float):
    image = tiny.x[0].astype(np.uint8)
    if as_float:
        image = image.astype(np.float32) + 0.4  # not on the 8-bit levels
    for epsilon in (0.004, 0.03):
        r = attack_image(tiny.model, image, AttackConfig("pgd", epsilon, steps=5))
        assert r["adversarial"].dtype == np.uint8 and r["adversarial"].shape == image.shape
        distance = np.abs(r["adversarial"].astype(np.float64) - np.asarray(image, np.float64))
        assert distance.max() <= epsilon * 255 and r["linf"] <= epsilon
        assert r["linf"] == pytest.approx(distance.max() / 255, abs=1e-6)
        np.testing.assert_allclose(r["before"], tiny.model.predict(np.asarray(image, np.float32)[None], verbose=0)[0],
                                   atol=1e-6)
        after = tiny.model.predict(r["adversarial"][None].astype(np.float32), verbose=0)[0]
        np.testing.assert_allclose(r["after"], after, atol=1e-6)  # the saved 8-bit image's probabilities
        assert r["after"][tiny.y[0]] < r["before"][tiny.y[0]]  # away from the predicted (true) class


# Robustness curve ---------------------------------------------------------------------------------

EPSILONS = [0, 0.01, 0.04, 0.1]


@pytest.fixture(scope="module")
def curve(tiny):
    progress = []
    result = robustness_curve(tiny.logits, tiny.x, tiny.y, EPSILONS, steps=5, batch_size=7,
                              on_progress=lambda step, logs: progress.append((step, logs)))
    return SimpleNamespace(result=result, progress=progress)


def test_robustness_curve_echoes_the_epsilons_and_starts_at_the_clean_accuracy(tiny, curve):
    assert curve.result["epsilons"] == [float(e) for e in EPSILONS]
    assert set(curve.result) == {"epsilons", *METHODS}
    clean = float((np.asarray(tiny.logits(tiny.x)).argmax(axis=1) == tiny.y).mean())
    for method in METHODS:
        assert len(curve.result[method]) == len(EPSILONS)
        assert curve.result[method][0] == clean == 1.0
        assert all(0.0 <= a <= 1.0 for a in curve.result[method])


def test_robustness_curve_falls_with_epsilon_and_pgd_is_below_fgsm(tiny, curve):
    one_image = 1 / len(tiny.y)
    for method in METHODS:
        accuracies = curve.result[method]
        assert all(b <= a + one_image for a, b in zip(accuracies, accuracies[1:])), (method, accuracies)
        assert accuracies[-1] < accuracies[0]
    assert all(p <= f + one_image for p, f in zip(curve.result["pgd"], curve.result["fgsm"]))
    assert curve.result["pgd"][-1] <= 0.5


def test_robustness_curve_reports_each_point(curve):
    assert [step for step, _ in curve.progress] == list(range(len(METHODS) * len(EPSILONS)))
    points = [(logs["method"], logs["epsilon"]) for _, logs in curve.progress]
    assert points == [(m, float(e)) for m in METHODS for e in EPSILONS]
    assert [logs["accuracy"] for _, logs in curve.progress] == curve.result["fgsm"] + curve.result["pgd"]


def test_robustness_curve_for_one_method(tiny):
    result = robustness_curve(tiny.logits, tiny.x[:4], tiny.y[:4], [0.0], methods=["pgd"])
    assert result == {"epsilons": [0.0], "pgd": [1.0]}


@pytest.mark.parametrize("methods, epsilons, fragment", [
    (["fgsm", "deepfool"], [0.0], "'deepfool'"),
    (["pgd"], [0.0, 1.5], "1.5"),
])
def test_robustness_curve_refuses_bad_settings(tiny, methods, epsilons, fragment):
    with pytest.raises(TLError) as info:
        robustness_curve(tiny.logits, tiny.x[:2], tiny.y[:2], epsilons, methods=methods, steps=1)
    assert fragment in str(info.value)


# Validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, fragment", [
    (AttackConfig(method="deepfool"), "'deepfool'"),
    (AttackConfig(method="PGD"), "'PGD'"),
    (AttackConfig(epsilon=-0.01), "-0.01"),
    (AttackConfig(epsilon=1.5), "1.5"),
    (AttackConfig(epsilon=3), "got 3"),
    (AttackConfig(method="pgd", steps=0), "got 0"),
    (AttackConfig(method="pgd", steps=-2), "got -2"),
    (AttackConfig(step_size=0.0), "got 0.0"),
    (AttackConfig(step_size=2.0), "got 2.0"),
    (AttackConfig(target=3), "target class 3"),
    (AttackConfig(target=-1), "target class -1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_invalid_settings_raise_tlerror_naming_the_value(tiny, config, fragment):
    with pytest.raises(TLError) as info:
        attack(tiny.logits, tiny.x[:2], tiny.y[:2], config, n_classes=len(CLASSES))
    assert fragment in str(info.value)


def test_fgsm_needs_no_steps(tiny):
    adv = attack(tiny.logits, tiny.x[:2], tiny.y[:2], AttackConfig(method="fgsm", epsilon=0.01, steps=0), 3)
    assert linf(adv, tiny.x[:2]).max() <= 0.01 * PIXEL_RANGE


def test_every_target_class_is_accepted(tiny):
    for target in range(len(CLASSES)):
        adv = attack(tiny.logits, tiny.x[:2], tiny.y[:2], AttackConfig("fgsm", 0.01, target=target), 3)
        assert linf(adv, tiny.x[:2]).max() <= 0.01 * PIXEL_RANGE
