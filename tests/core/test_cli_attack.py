"""`python -m tlcore attack`, in-process via tlcore.cli.main, on a tiny saved run and generated class folders.

The run is the tiny classifier of test_attacks (the stand-in backbone of test_finetune at 32x32, head
trained on red / green / blue images) saved as a run directory; ``tlcore.models.run`` reloads it with the
stand-in for the whole module. The attacked folders hold 40x40 PNGs, resized to 32 on the way in.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.test_attacks import CLASSES, SIZE, tiny_classifier
from tests.core.test_cli import assert_user_error, last_json, read_progress, run_cli
from tlcore.adversarial.attacks import AttackConfig, attack
from tlcore.models.classifier import logits_function
from tlcore.export.formats import labelled_files
from tlcore.data.images import load_image
from tlcore.models.run import load_run, save_run

N_PER_CLASS = 4
FIELDS = {"method", "epsilon", "steps", "target", "n", "clean_accuracy", "adversarial_accuracy", "success_rate",
          "mean_linf", "max_linf", "ms_per_image", "skipped", "out"}


@pytest.fixture(scope="module")
def built(run_standin, tmp_path_factory):
    """A saved tiny run, a labelled folder of 3 x 4 generated images, and the run reloaded in-process."""
    root = tmp_path_factory.mktemp("cli-attack")
    model, _ = tiny_classifier()
    config = {"backbone": "efficientnet_lite0", "weights": None, "input_size": SIZE, "fine_tuned": False,
              "train": {"epochs": 20, "dropout": 0.2, "weights": None}}
    run = save_run(root / "run", model, CLASSES, config, {"val_accuracy": 1.0, "test_accuracy": None})
    data = make_image_folder(root / "data", n_per_class=N_PER_CLASS, classes=CLASSES, size=40, seed=5)
    loaded = load_run(run)
    return SimpleNamespace(root=root, run=run, data=data, loaded=loaded, logits=logits_function(loaded.model))


def attack_json(args) -> dict:
    code, stdout, stderr = run_cli(["attack", *args, "--json"])
    assert code == 0, stderr
    assert stderr == ""  # --json is quiet
    return last_json(stdout)


def expected(built, config: AttackConfig, data=None) -> SimpleNamespace:
    """The same attack in-process (one batch, as the CLI makes of up to 16 images): labels and predictions."""
    paths, labels, _ = labelled_files(built.loaded.classes, data or built.data)
    kept = [(p, y) for p, y in zip(paths, labels) if config.target is None or y != config.target]
    x = np.stack([load_image(p, SIZE) for p, _ in kept]).astype(np.float32)
    y = np.asarray([label for _, label in kept])
    adv = attack(built.logits, x, y, config, len(CLASSES))
    return SimpleNamespace(paths=[p for p, _ in kept], x=x, y=y, adv=adv,
                           clean=np.asarray(built.logits(x)).argmax(axis=1),
                           pred=np.asarray(built.logits(adv)).argmax(axis=1))


# Untargeted ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def untargeted(built):
    return attack_json([built.run, built.data, "--method", "pgd", "--epsilon", "0.05", "--steps", "5"])


def test_attack_json_fields(built, untargeted):
    r = untargeted
    assert set(r) == FIELDS
    assert (r["method"], r["epsilon"], r["steps"], r["target"], r["out"]) == ("pgd", 0.05, 5, None, None)
    assert r["n"] == len(CLASSES) * N_PER_CLASS
    assert r["skipped"] == []
    assert r["ms_per_image"] > 0
    json.dumps(r)  # plain JSON types all through


def test_attack_json_figures_are_consistent(built, untargeted):
    r = untargeted
    assert 0 < r["mean_linf"] <= r["max_linf"] <= r["epsilon"]
    assert r["max_linf"] >= r["epsilon"] - 1e-5  # PGD uses its budget
    for key in ("clean_accuracy", "adversarial_accuracy", "success_rate"):
        assert 0 <= r[key] <= 1
    # The clean figure is the model's accuracy, as `evaluate` reports it.
    code, stdout, stderr = run_cli(["evaluate", built.run, built.data, "--json"])
    assert code == 0, stderr
    assert r["clean_accuracy"] == last_json(stdout)["accuracy"] == 1.0
    # Untargeted success: share of the correctly classified images now wrong.
    assert r["success_rate"] == pytest.approx(1 - r["adversarial_accuracy"] / r["clean_accuracy"])
    assert r["adversarial_accuracy"] < r["clean_accuracy"]
    # The same attack in-process gives the same predictions.
    same = expected(built, AttackConfig("pgd", 0.05, steps=5))
    assert r["adversarial_accuracy"] == pytest.approx((same.pred == same.y).mean())
    assert r["max_linf"] == pytest.approx(np.abs(same.adv - same.x).max() / 255, abs=1e-7)


def test_attack_fgsm_reports_one_step_and_a_weaker_result(built, untargeted):
    r = attack_json([built.run, built.data, "--method", "fgsm", "--epsilon", "0.05", "--steps", "7"])
    assert (r["method"], r["steps"], r["n"]) == ("fgsm", 1, untargeted["n"])
    assert r["max_linf"] <= 0.05
    assert r["clean_accuracy"] == untargeted["clean_accuracy"]
    assert untargeted["adversarial_accuracy"] <= r["adversarial_accuracy"] < r["clean_accuracy"]


def test_attack_epsilon_zero_changes_nothing(built):
    r = attack_json([built.run, built.data, "--method", "pgd", "--epsilon", "0", "--steps", "2"])
    assert r["adversarial_accuracy"] == r["clean_accuracy"]
    assert r["success_rate"] == 0.0 and r["max_linf"] == 0.0 and r["mean_linf"] == 0.0


def test_attack_human_readable(built):
    code, stdout, stderr = run_cli(["attack", built.run, built.data, "--method", "fgsm", "--epsilon", "0.02"])
    assert code == 0, stderr
    (line,) = stdout.strip().splitlines()
    assert line.startswith("fgsm eps 0.02: accuracy 1.000 -> ") and f"on {len(CLASSES) * N_PER_CLASS} images" in line
    assert "success rate" in line and "mean L-inf 0.0200" in line and line.endswith("ms/image")


def test_attack_progress_file(built, tmp_path):
    events_file = tmp_path / "events.jsonl"
    code, stdout, stderr = run_cli(["attack", built.run, built.data, "--method", "fgsm", "--epsilon", "0.01",
                                    "--progress", events_file, "--json"])
    assert code == 0, stderr
    events = read_progress(events_file)
    assert [e.get("phase") for e in events[:2]] == ["starting", "loading"]  # said before TensorFlow is imported
    events = events[2:]
    assert [e["type"] for e in events] == ["start", "attack", "done"]
    assert events[0]["command"] == "attack"
    assert events[1]["done"] == events[1]["total"] == len(CLASSES) * N_PER_CLASS
    assert events[-1]["result"] == last_json(stdout)


def test_attack_skips_unreadable_images(built, tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=2, classes=CLASSES, size=40, seed=6)
    broken = data / "red" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = attack_json([built.run, data, "--method", "fgsm", "--epsilon", "0.01"])
    assert r["n"] == 2 * len(CLASSES)
    assert [s["path"] for s in r["skipped"]] == [str(broken)]
    assert r["skipped"][0]["reason"]


# Targeted -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def targeted(built):
    out = built.root / "adv-targeted"
    r = attack_json([built.run, built.data, "--method", "pgd", "--epsilon", "0.1", "--steps", "10",
                     "--target", "green", "--out", out])
    return SimpleNamespace(result=r, out=out)


def test_targeted_attack_leaves_the_target_class_out(built, targeted):
    r = targeted.result
    assert r["target"] == "green"
    assert r["n"] == (len(CLASSES) - 1) * N_PER_CLASS  # the green images are not attacked
    assert sorted(p.name for p in targeted.out.iterdir()) == ["blue", "red"]


def test_targeted_success_rate_is_the_share_now_classified_as_the_target(built, targeted):
    r = targeted.result
    same = expected(built, AttackConfig("pgd", 0.1, steps=10, target=CLASSES.index("green")))
    assert len(same.y) == r["n"]
    assert r["success_rate"] == pytest.approx((same.pred == CLASSES.index("green")).mean())
    assert r["adversarial_accuracy"] == pytest.approx((same.pred == same.y).mean())
    assert r["success_rate"] + r["adversarial_accuracy"] <= 1
    assert r["success_rate"] >= 0.5  # 0.1 of the range is plenty on this tiny model
    assert r["max_linf"] <= 0.1


def test_out_writes_pngs_per_class_within_epsilon_of_the_originals(built, targeted):
    eps_levels = np.floor(0.1 * 255 + 1e-6)
    originals = {Path(p).stem: p for p in expected(built, AttackConfig("fgsm", 0.0)).paths}
    written = sorted(targeted.out.rglob("*"))
    pngs = [p for p in written if p.is_file()]
    assert len(pngs) == targeted.result["n"] and all(p.suffix == ".png" for p in pngs)
    changed = 0
    for png in pngs:
        source = originals[png.stem]
        assert png.parent.name == Path(source).parent.name  # under its true class
        adversarial = load_image(png)
        assert adversarial.shape == (SIZE, SIZE, 3) and adversarial.dtype == np.uint8
        distance = np.abs(adversarial.astype(np.int64) - load_image(source, SIZE).astype(np.int64))
        assert distance.max() <= eps_levels
        changed += int(distance.max() > 0)
    assert changed == len(pngs)


def test_out_keeps_every_image_when_names_repeat(built, tmp_path):
    # Nested folders count for their class and file names repeat across them (phones export by date):
    # every attacked image must still get its own PNG.
    data = make_image_folder(tmp_path / "data", n_per_class=2, classes=CLASSES, size=40, seed=7)
    for name in ("red", "blue"):
        (data / name / "2024").mkdir()
        for image in sorted((data / name).glob("*.png")):
            (data / name / "2024" / image.name).write_bytes(image.read_bytes())
    out = tmp_path / "adv"
    r = attack_json([built.run, data, "--method", "fgsm", "--epsilon", "0.01", "--out", out])
    assert r["n"] == 2 * 2 + 2 * 2 + 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "blue/blue_0-2.png", "blue/blue_0.png", "blue/blue_1-2.png", "blue/blue_1.png",
        "green/green_0.png", "green/green_1.png",
        "red/red_0-2.png", "red/red_0.png", "red/red_1-2.png", "red/red_1.png"]


# User errors: exit 2, one line on stderr ----------------------------------------------------------

def test_attack_unknown_target_class(built):
    code, stdout, stderr = run_cli(["attack", built.run, built.data, "--target", "purple"])
    assert_user_error(code, stdout, stderr, "'purple'", "red, green, blue")


@pytest.mark.parametrize("args, fragments", [
    (["--epsilon", "3"], ["epsilon", "got 3.0"]),
    (["--epsilon", "-0.1"], ["got -0.1"]),
    (["--method", "pgd", "--steps", "0"], ["at least one step", "got 0"]),
    (["--step-size", "2"], ["step size", "got 2.0"]),
    (["--method", "cw"], ["'cw'"]),
])
def test_attack_bad_settings(built, args, fragments):
    code, stdout, stderr = run_cli(["attack", built.run, built.data, *args])
    assert_user_error(code, stdout, stderr, *fragments)


def test_attack_missing_data_folder(built, tmp_path):
    missing = tmp_path / "nowhere"
    code, stdout, stderr = run_cli(["attack", built.run, missing])
    assert_user_error(code, stdout, stderr, str(missing), "does not exist")


def test_attack_data_with_an_unknown_class(built, tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=1, classes=("red", "green"), size=40)
    (data / "green").rename(data / "yellow")
    code, stdout, stderr = run_cli(["attack", built.run, data])
    assert_user_error(code, stdout, stderr, "'yellow'")


@pytest.mark.parametrize("target", [[], ["--target", "red"]], ids=["untargeted", "targeted"])
def test_attack_a_folder_that_is_not_a_run(built, tmp_path, target):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    code, stdout, stderr = run_cli(["attack", not_a_run, built.data, *target])
    assert_user_error(code, stdout, stderr, str(not_a_run), "not a run directory")
