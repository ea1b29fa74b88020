"""diagnose(): the right verdict on planted curves, robust to missing and NaN values, and on a real run; remedies
that skip what the run already did."""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import fields

import pytest

from tests.conftest import SMALL_INPUT, make_image_folder
from tlcore.analysis.diagnosis import CODES, REMEDIES, Done, Thresholds, diagnose
from tlcore.io.errors import TLError


def history(train, val=None, train_loss=None, val_loss=None, phases=None):
    """Per-epoch dicts as tlcore.training.pipeline records them; losses default to 1 - accuracy."""
    out = []
    for i, acc in enumerate(train):
        entry = {"epoch": i + 1, "phase": phases[i] if phases else "head", "accuracy": acc,
                 "loss": train_loss[i] if train_loss else 1 - acc}
        if val is not None:
            entry["val_accuracy"] = val[i]
            entry["val_loss"] = val_loss[i] if val_loss else 1 - val[i]
        out.append(entry)
    return out


def rising(start, end, n=10, rate=2.0):
    """A curve that climbs from ``start`` towards ``end`` and flattens, like real training."""
    return [start + (end - start) * (1 - math.exp(-i / rate)) for i in range(n)]


GOOD = history(rising(0.60, 0.97), rising(0.62, 0.95))
# Training climbs to 100% while validation peaks at epoch 4 and slides back; validation loss turns up.
OVERFIT = history(rising(0.60, 1.00), [0.65, 0.72, 0.75, 0.76, 0.75, 0.74, 0.73, 0.72, 0.71, 0.70],
                  val_loss=[0.60, 0.50, 0.45, 0.44, 0.47, 0.52, 0.58, 0.64, 0.70, 0.76])
# Accuracy flat at a small gap, but validation loss climbs from epoch 3 while training loss keeps falling.
OVERFIT_BY_LOSS = history([0.90, 0.93, 0.95, 0.96, 0.97, 0.97, 0.98, 0.98, 0.98, 0.98],
                          [0.88, 0.90, 0.91, 0.91, 0.91, 0.91, 0.90, 0.91, 0.91, 0.90],
                          train_loss=[0.40, 0.25, 0.18, 0.14, 0.11, 0.09, 0.07, 0.06, 0.05, 0.04],
                          val_loss=[0.40, 0.32, 0.30, 0.33, 0.37, 0.42, 0.47, 0.52, 0.56, 0.60])
UNDERFIT = history([0.45 + 0.02 * i for i in range(10)], [0.44 + 0.018 * i for i in range(10)],
                   train_loss=[0.69 - 0.005 * i for i in range(10)], val_loss=[0.69 - 0.004 * i for i in range(10)])
UNDERFIT_FLAT = history([0.55, 0.58, 0.60, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61],
                        [0.52, 0.55, 0.57, 0.58, 0.58, 0.58, 0.58, 0.58, 0.58])
# Five good head epochs, then unfreezing wrecks validation accuracy (91% -> 60%), which only partly recovers.
FORGET = history([0.70, 0.85, 0.90, 0.92, 0.93, 0.80, 0.85, 0.90], [0.75, 0.86, 0.90, 0.91, 0.91, 0.60, 0.70, 0.80],
                 phases=["head"] * 5 + ["fine_tune"] * 3)
# Unfreezing that keeps accuracy but makes validation loss jump (0.20 -> 0.55): forgetting seen in the loss.
FORGET_BY_LOSS = history([0.80, 0.90, 0.93, 0.94, 0.95, 0.95, 0.96], [0.85, 0.90, 0.92, 0.92, 0.90, 0.91, 0.92],
                         val_loss=[0.40, 0.28, 0.22, 0.20, 0.55, 0.40, 0.30],
                         phases=["head"] * 4 + ["fine_tune"] * 3)
# A healthy fine-tune: a dip of 2 points after unfreezing is noise, not forgetting.
FINE_TUNE_OK = history([0.70, 0.85, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96], [0.75, 0.86, 0.90, 0.91, 0.91, 0.89, 0.92, 0.93],
                       phases=["head"] * 5 + ["fine_tune"] * 3)
NO_VAL = history(rising(0.5, 0.95, n=6))
SHORT = history([0.6, 0.8], [0.6, 0.8])


@pytest.mark.parametrize("curves, code", [
    (GOOD, "good_fit"),
    (OVERFIT, "overfitting"),
    (OVERFIT_BY_LOSS, "overfitting"),
    (UNDERFIT, "underfitting"),
    (UNDERFIT_FLAT, "underfitting"),
    (FORGET, "forgetting"),
    (FORGET_BY_LOSS, "forgetting"),
    (FINE_TUNE_OK, "good_fit"),
    (NO_VAL, "no_validation"),
    (SHORT, "too_short"),
    ([], "too_short"),
], ids=["good", "overfit", "overfit-by-loss", "underfit", "underfit-flat", "forgetting", "forgetting-by-loss",
        "fine-tune-ok", "no-validation", "too-short", "empty"])
def test_planted_curves_get_their_verdict(curves, code):
    result = diagnose(curves)
    assert result["code"] == code, result["message"]
    assert set(result) == {"code", "message", "remedies", "evidence"}
    assert result["message"].endswith(".") and result["remedies"]
    assert all(isinstance(r, str) and r for r in result["remedies"])
    json.dumps(result, allow_nan=False)  # it goes into metrics.json and the CLI's JSON as is


def test_overfitting_evidence_names_the_gap_and_the_best_epoch():
    ev = diagnose(OVERFIT)["evidence"]
    assert ev["window"] == 3 and ev["epochs"] == 10
    assert ev["train_accuracy"] > 0.98 and ev["val_accuracy"] == pytest.approx(0.71)
    assert ev["gap"] == pytest.approx(ev["train_accuracy"] - ev["val_accuracy"], abs=1e-3)
    assert ev["gap_growth"] > 0.2
    assert ev["best_val_epoch"] == 4 and ev["min_val_loss_epoch"] == 4
    assert "epoch 4" in diagnose(OVERFIT)["message"]


def test_underfitting_says_whether_training_is_still_rising():
    assert "still rising" in diagnose(UNDERFIT)["message"]
    assert diagnose(UNDERFIT)["evidence"]["train_trend"] > 0.01
    assert "no longer rising" in diagnose(UNDERFIT_FLAT)["message"]


def test_forgetting_evidence_compares_the_last_head_epoch_with_the_first_fine_tune_epochs():
    ev = diagnose(FORGET)["evidence"]
    assert ev["fine_tune_epoch"] == 6
    assert ev["val_accuracy_before"] == pytest.approx(0.91) and ev["val_accuracy_after"] == pytest.approx(0.60)
    assert ev["val_accuracy_drop"] == pytest.approx(0.31)
    assert any("1e-5" in r for r in diagnose(FORGET)["remedies"])


def test_the_same_drop_without_a_phase_boundary_is_not_forgetting():
    no_boundary = [{**h, "phase": "head"} for h in FORGET]
    assert diagnose(no_boundary)["code"] != "forgetting"
    assert diagnose(no_boundary)["evidence"]["fine_tune_epoch"] is None


def test_thresholds_decide_the_verdict():
    lenient = Thresholds(gap=0.5, val_loss_rise=5.0)
    assert diagnose(OVERFIT, lenient)["code"] == "good_fit"
    assert diagnose(UNDERFIT, Thresholds(underfit_accuracy=0.5))["code"] != "underfitting"
    assert diagnose(SHORT, Thresholds(min_epochs=2, window=1))["code"] != "too_short"


@pytest.mark.parametrize("bad", [Thresholds(window=0), Thresholds(gap=-0.1), Thresholds(rising=float("nan")),
                                 Thresholds(min_epochs=2.5)])
def test_bad_thresholds_are_a_user_error_naming_the_value(bad):
    with pytest.raises(TLError, match=r"diagnosis threshold \w+ must be .*got"):
        diagnose(GOOD, bad)


@pytest.mark.parametrize("value, shown", [("not a history", "str"), ({"epoch": 1}, "dict"), (None, "NoneType"),
                                          ([{"epoch": 1}, 3], "entry 2 is 3")])
def test_not_a_list_of_dicts_is_a_user_error(value, shown):
    with pytest.raises(TLError, match=shown):
        diagnose(value)


def test_nan_loss_at_the_end_means_training_diverged():
    curves = [dict(h) for h in GOOD]
    for h in curves[6:]:
        h.update(loss=float("nan"), val_loss=float("nan"), accuracy=0.5, val_accuracy=0.5)
    result = diagnose(curves)
    assert result["code"] == "diverged"
    assert result["evidence"]["diverged_epoch"] == 7
    assert "epoch 7" in result["message"]
    json.dumps(result, allow_nan=False)


def test_stray_nan_and_infinite_values_are_skipped_not_averaged():
    curves = [dict(h) for h in OVERFIT]
    curves[2]["val_loss"] = float("nan")
    curves[5]["val_accuracy"] = float("inf")
    curves[8]["loss"] = float("nan")  # a stray NaN before the end, not a divergence
    result = diagnose(curves)
    assert result["code"] == "overfitting"
    assert all(v is None or math.isfinite(v) for v in result["evidence"].values())
    json.dumps(result, allow_nan=False)


def test_missing_keys_are_treated_as_absent():
    # No epoch numbers or phases, validation only on some epochs, a non-numeric value: still read.
    curves = [{k: v for k, v in h.items() if k not in ("epoch", "phase")} for h in OVERFIT]
    del curves[1]["val_accuracy"], curves[1]["val_loss"]
    curves[3]["accuracy"] = "0.9"
    curves[4]["val_loss"] = True
    result = diagnose(curves)
    assert result["code"] == "overfitting"
    assert result["evidence"]["best_val_epoch"] == 4  # numbered by position


def test_epochs_without_any_training_metric_are_too_short():
    curves = [{"epoch": i + 1, "phase": "head", "val_accuracy": 0.8} for i in range(5)]
    result = diagnose(curves)
    assert result["code"] == "too_short"
    assert "0 of 5" in result["message"]


def test_validation_on_fewer_than_three_epochs_is_no_validation():
    curves = [{k: v for k, v in h.items() if not k.startswith("val_")} if i > 1 else h for i, h in enumerate(GOOD)]
    assert diagnose(curves)["code"] == "no_validation"


def test_accuracy_missing_everywhere_falls_back_on_the_loss():
    curves = [{k: v for k, v in h.items() if "accuracy" not in k} for h in OVERFIT_BY_LOSS]
    result = diagnose(curves)
    assert result["code"] == "overfitting"
    assert result["evidence"]["train_accuracy"] is None and result["evidence"]["min_val_loss_epoch"] == 3


def test_every_code_has_remedies():
    from tlcore.analysis.diagnosis import REMEDIES

    assert set(REMEDIES) == set(CODES)


def test_a_real_tiny_training_history_is_accepted(tmp_path, seed):
    from tlcore.training.config import TrainConfig
    from tlcore.training.pipeline import train

    data = make_image_folder(tmp_path / "data", n_per_class=6)
    summary = train(data, TrainConfig(weights=None, input_size=SMALL_INPUT, epochs=3, batch_size=4, split=(0.5, 0.5, 0.0)))
    result = diagnose(summary["history"])
    assert result["code"] in CODES and result["code"] not in ("too_short", "no_validation"), result
    assert result["evidence"]["epochs"] == 3
    assert result["evidence"]["val_accuracy"] is not None
    json.dumps(result, allow_nan=False)


# Remedies that know what the run did (issue 17) ------------------------------------------------

FINE_TUNE_ADVICE = ("fine-tune the top backbone layers", "Fine-tune: unfreeze")
AUGMENT_ADVICE = "turn on augmentation"
HEAD_ONLY_GOOD = GOOD


def said(result, *phrases) -> bool:
    return any(p.lower() in r.lower() for r in result["remedies"] for p in phrases)


def test_before_fine_tuning_a_good_fit_suggests_it_and_after_it_the_next_thing():
    assert said(diagnose(HEAD_ONLY_GOOD), *FINE_TUNE_ADVICE)
    after = diagnose(FINE_TUNE_OK)  # the history itself shows fine-tuning epochs
    assert after["code"] == "good_fit"
    assert not said(after, *FINE_TUNE_ADVICE)
    assert said(after, "train again with augmentation on")
    # Told by the run's settings (a history without phases, as an older run may have): the same.
    told = diagnose(HEAD_ONLY_GOOD, done=Done(fine_tuned=True))
    assert not said(told, *FINE_TUNE_ADVICE) and said(told, "augmentation on")
    both = diagnose(FINE_TUNE_OK, done=Done(augmented=True))
    assert not said(both, *FINE_TUNE_ADVICE) and not said(both, "augmentation on")
    assert said(both, "add photos like the ones the model gets wrong")


def test_overfitting_after_augmentation_does_not_suggest_turning_it_on():
    assert said(diagnose(OVERFIT), AUGMENT_ADVICE)
    augmented = diagnose(OVERFIT, done=Done(augmented=True))
    assert augmented["code"] == "overfitting"
    assert not said(augmented, AUGMENT_ADVICE)
    assert said(augmented, "add photos")  # the next thing to try: more photos, as the data tiers say


def test_overfitting_remedies_follow_fine_tuning_and_rebalancing():
    plain = diagnose(OVERFIT)
    assert not said(plain, "unfreeze fewer layers", "small classes")  # nothing was unfrozen or rebalanced
    assert said(diagnose(OVERFIT, done=Done(fine_tuned=True)), "unfreeze fewer layers")
    for done in (Done(class_weighted=True), Done(oversampled=True)):
        assert said(diagnose(OVERFIT, done=done), "Add photos to the small classes")


def test_underfitting_remedies_follow_fine_tuning_augmentation_and_undersampling():
    assert said(diagnose(UNDERFIT), "Fine-tune: unfreeze")
    tuned = diagnose(UNDERFIT, done=Done(fine_tuned=True))
    assert tuned["code"] == "underfitting"
    assert not said(tuned, "Fine-tune: unfreeze") and said(tuned, "Fine-tune more of the backbone's top layers")
    assert said(diagnose(UNDERFIT, done=Done(augmented=True)), "Lower the augmentation strength")
    assert not said(diagnose(UNDERFIT), "augmentation strength", "undersampling")
    assert said(diagnose(UNDERFIT, done={"undersampled": True}), "instead of undersampling")


def test_what_was_done_changes_the_remedies_never_the_verdict():
    for curves in (GOOD, OVERFIT, UNDERFIT, FORGET, NO_VAL, SHORT):
        plain = diagnose(curves)
        for done in (Done(fine_tuned=True, augmented=True, class_weighted=True, oversampled=True),
                     Done(augmented=True, undersampled=True)):
            told = diagnose(curves, done=done)
            assert (told["code"], told["message"], told["evidence"]) == (plain["code"], plain["message"],
                                                                       plain["evidence"])


def test_every_run_gets_remedies_from_the_listed_ones_in_order_and_every_listed_one_is_given_to_some_run():
    combos = [Done(*values) for values in itertools.product((False, True), repeat=len(fields(Done)))]
    curves = {"good_fit": GOOD, "overfitting": OVERFIT, "underfitting": UNDERFIT, "forgetting": FORGET,
              "no_validation": NO_VAL, "too_short": SHORT,
              "diverged": history([0.6, 0.7, 0.8], [0.6, 0.7, 0.8], train_loss=[0.5, 0.4, float("nan")])}
    assert set(curves) == set(CODES)
    for code, planted in curves.items():
        given = set()
        for done in combos:
            result = diagnose(planted, done=done)
            assert result["code"] == code
            remedies = result["remedies"]
            assert remedies and remedies == [r for r in REMEDIES[code] if r in remedies], (code, done)
            given |= set(remedies)
        assert given == set(REMEDIES[code]), (code, set(REMEDIES[code]) - given)


def test_what_was_done_is_checked():
    assert diagnose(GOOD, done={"fine_tuned": True})["remedies"] == diagnose(GOOD, done=Done(fine_tuned=True))["remedies"]
    with pytest.raises(TLError, match="unknown fact 'finetuned'"):
        diagnose(GOOD, done={"finetuned": True})
    with pytest.raises(TLError, match="must be a Done or a dict"):
        diagnose(GOOD, done=["fine_tuned"])
