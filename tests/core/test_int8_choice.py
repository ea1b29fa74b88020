"""INT8 extraction: CPU-flag detection, the accuracy rule, the automatic choice and its fall-backs (issue 20, item 6).

Logic tests name the CPU flags they want (``TLCORE_CPU_FLAGS``), so they run on every machine, AVX2 ones included.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.core.test_engine import KEY, SIZE, Builds, tiny_backbone
from tlcore.io import paths
from tlcore.io.cpus import cpu_flags, cpu_model, int8_dot_product
from tlcore.training import engine, int8_choice
from tlcore.training.config import TrainConfig
from tlcore.training.engine import int8_engine_path, engine_path
from tlcore.training.features import FeatureCache, extract_features
from tlcore.training.frozen import FrozenBackbone
from tlcore.training.int8_choice import (check_int8, check_later, keeps_accuracy, plan_extraction, request_path,
                                         verdict_path)
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tests.core.test_frozen import NAME, tiny_registered  # noqa: F401 - a fixture

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx_vnni amx_tile amx_int8
"""
EPYC_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes crc32 asimddp
CPU part\t: 0xd0c
"""
VNNI = frozenset({"avx2", "avx512f", "avx512_vnni"})


# CPU flags -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, dot, model", [(XEON, True, "Intel(R) Xeon(R) Processor"),
                                              (EPYC_AVX2, False, "AMD EPYC 7B12"),
                                              (ARM, True, "0xd0c"), ("", False, "unknown")])
def test_cpu_flags_and_int8_dot_products_from_cpuinfo(text, dot, model):
    flags = cpu_flags(text)
    assert int8_dot_product(flags) is dot
    assert cpu_model(text) == model
    assert ("avx2" in flags) is ("avx2" in text)


def test_flags_variable_replaces_the_cpus_own(monkeypatch):
    monkeypatch.setenv("TLCORE_CPU_FLAGS", "AVX2 avx_vnni")
    assert cpu_flags() == {"avx2", "avx_vnni"} and int8_dot_product(cpu_flags())
    monkeypatch.setenv("TLCORE_CPU_FLAGS", "")  # the tests' default: a CPU without int8 dot products
    assert cpu_flags() == frozenset() and not int8_dot_product(cpu_flags())
    assert cpu_flags(EPYC_AVX2) == {"fpu", "sse2", "avx", "avx2", "fma"}  # given text wins over the variable


# The rule --------------------------------------------------------------------------------------

@pytest.mark.parametrize("f32, i8, i8_on_f32, passed", [
    (0.948, 0.948, 0.948, True),
    (0.948, 0.944, 0.946, True),     # -0.4 points
    (0.90, 0.895, 0.895, True),      # exactly -0.5 points: kept
    (0.948, 0.941, 0.948, False),    # -0.7 on INT8 features
    (0.948, 0.948, 0.941, False),    # the saved model (float32 backbone) would lose 0.7
    (0.90, 0.95, None, True),        # better is fine; no float32 check given
    (0.5, 0.49, None, False)])
def test_keeps_accuracy_within_half_a_point(f32, i8, i8_on_f32, passed):
    assert keeps_accuracy(f32, i8, i8_on_f32) is passed


def test_rule_on_generated_heads_counts_photos():
    # 153 validation photos: one photo is 0.65 points, so losing one fails and matching passes.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 153)
    correct = lambda wrong: np.mean(np.where(np.arange(153) < wrong, 1 - y, y) == y)  # noqa: E731
    assert keeps_accuracy(correct(8), correct(8), correct(8))
    assert not keeps_accuracy(correct(8), correct(9), correct(8))
    assert keeps_accuracy(correct(8), correct(7), correct(8))


# The plan ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, key, flags, reason", [
    (TrainConfig(int8_extraction=False), KEY, VNNI, "turned off"),
    (TrainConfig(), KEY, frozenset({"avx2", "fma"}), "no int8 dot-product"),
    (TrainConfig(), None, VNNI, "random weights"),
    (TrainConfig(fine_tune_layers=3), KEY, VNNI, "fine-tuning")])
def test_float32_when_int8_does_not_apply(config, key, flags, reason):
    plan = plan_extraction(config, key, SIZE, flags)
    assert plan.engine == "float32" and not plan.check and reason in plan.report["reason"]
    assert plan.report["cpu_int8_dot_product"] is int8_dot_product(flags)


def test_first_run_on_an_int8_cpu_checks():
    plan = plan_extraction(TrainConfig(), KEY, SIZE, VNNI)
    assert plan.check and plan.engine == "float32"


# The check, on a tiny backbone and generated photos ----------------------------------------------

@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


@pytest.fixture
def photos(tmp_path):
    root = make_image_folder(tmp_path / "data", n_per_class=10, size=32)
    paths = sorted(str(p) for p in Path(root).rglob("*.png"))
    y = np.array([0 if "/red/" in p else 1 for p in paths])
    idx = {"train": np.array([i for i in range(len(paths)) if i % 4]), "val": np.array(range(0, len(paths), 4))}
    return paths, y, idx


def float32_features(paths, backbone):
    return extract_features(paths, KEY, lambda: engine.fast_encoder(Builds(backbone), KEY, SIZE), SIZE,
                            FeatureCache()).features


def run_check(backbone, photos, **config):
    paths, y, idx = photos
    x = float32_features(paths, backbone)
    plan = plan_extraction(TrainConfig(epochs=30, **config), KEY, SIZE, VNNI)
    assert plan.check
    return check_int8(plan, Builds(backbone), KEY, SIZE, paths, x, y, idx, 2, TrainConfig(epochs=30, **config),
                      FeatureCache()), x


def test_int8_chosen_when_it_keeps_accuracy_and_remembered(backbone, photos):
    (plan, x8), x = run_check(backbone, photos)
    report = plan.report
    assert report["checked"] == "this run" and report["n_val"] == 5
    assert keeps_accuracy(report["val_accuracy_float32"], report["val_accuracy_int8"],
                          report["val_accuracy_int8_head_on_float32"])
    assert plan.engine == "int8" == report["engine"] and plan.feature_key.startswith(f"{KEY}|int8:")
    assert x8.shape == x.shape and not np.array_equal(x8, x)  # INT8 features, not the float32 ones
    # Its own file, never the float32 engine's; the verdict beside it names that file's content.
    path = int8_engine_path(KEY, SIZE)
    assert path.is_file() and path.name.endswith(".int8.tflite") and path != engine_path(KEY, SIZE)
    assert json.loads(verdict_path(path).read_text())["passed"] is True
    # The next run extracts with INT8 at once, from the cached file (nothing converted again).
    later = plan_extraction(TrainConfig(), KEY, SIZE, VNNI)
    assert later.engine == "int8" and later.report["checked"] == "an earlier run"
    assert later.feature_key == plan.feature_key
    np.testing.assert_array_equal(later.encoder(np.full((1, SIZE, SIZE, 3), 90, np.uint8)),
                                  plan.encoder(np.full((1, SIZE, SIZE, 3), 90, np.uint8)))


def test_float32_kept_when_int8_loses_accuracy(backbone, photos, monkeypatch):
    real = int8_choice.head_val_accuracy

    def worse_int8(x_train, *args):
        accs = real(x_train, *args)
        return accs if len(accs) == 1 else [a - 0.01 for a in accs]  # INT8's head: 1 point lower

    monkeypatch.setattr(int8_choice, "head_val_accuracy", worse_int8)
    (plan, features), x = run_check(backbone, photos)
    assert plan.engine == "float32" and "lost more than 0.5 points" in plan.report["reason"]
    assert features is x
    later = plan_extraction(TrainConfig(), KEY, SIZE, VNNI)
    assert later.engine == "float32" and later.report["checked"] == "an earlier run" and not later.check


def test_a_failed_conversion_falls_back_to_float32(backbone, photos, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(engine, "convert_backbone_int8", broken)
    (plan, features), x = run_check(backbone, photos)
    assert plan.engine == "float32" and "could not be made" in plan.report["reason"] and features is x
    assert "could not make the INT8 engine" in caplog.text
    assert not int8_engine_path(KEY, SIZE).exists()


def test_no_validation_photos_means_float32(backbone, photos):
    paths, y, idx = photos
    (plan, _), _ = run_check(backbone, (paths, y, {"train": idx["train"], "val": np.array([], int)}))
    assert plan.engine == "float32" and "no validation photos" in plan.report["reason"]


# The check after a first run, in a process of its own --------------------------------------------

def test_a_first_run_hands_the_check_to_a_process_that_reads_its_request(tiny_registered, photos, monkeypatch):
    monkeypatch.setenv("TLCORE_CPU_FLAGS", " ".join(sorted(VNNI)))
    paths, y, idx = photos
    config = TrainConfig(backbone=NAME, epochs=30)
    frozen = FrozenBackbone(NAME)
    extract_features(paths, frozen.key, frozen.encoder, frozen.size, FeatureCache())  # what the run extracted
    plan = plan_extraction(config, frozen.key, frozen.size)
    assert plan.check
    report, start = check_later(plan, config, frozen.key, frozen.size, paths, y, idx, 2)
    assert report["engine"] == "float32" and "checked in the background" in report["reason"] and callable(start)
    request = request_path(int8_engine_path(frozen.key, frozen.size))
    assert request.is_file() and not int8_engine_path(frozen.key, frozen.size).exists()  # nothing done in the run

    # What start() runs in a process of its own, run here (where the tiny backbone is registered).
    code, out, err = run_cli(["prepare", "--int8-check", request, "--json"])
    assert code == 0, err
    checked = last_json(out)
    assert checked["checked"] == "this run" and checked["n_val"] == 5 and not request.exists()
    later = plan_extraction(config, frozen.key, frozen.size)
    assert later.engine == checked["engine"] and later.report["checked"] == "an earlier run"


def test_a_check_request_is_read_from_the_engine_cache_only_and_in_its_own_shape(tmp_path, isolated_cache):
    outside = tmp_path / "x.int8.check.json"
    outside.write_text("{}")
    assert_user_error(*run_cli(["prepare", "--int8-check", outside]), "outside")
    assert_user_error(*run_cli(["prepare", "--int8-check", "missing.int8.check.json"]), "no INT8 check request")
    bad = isolated_cache / "engines" / "bad.int8.check.json"
    bad.parent.mkdir()
    settings = {k: getattr(TrainConfig(), k) for k in ("backbone", "input_size", "seed", "epochs", "batch_size",
                                                       "lr", "dropout")}
    for body, says in [({"settings": settings, "paths": ["a.png"], "labels": [5], "train": [0], "val": [0],
                         "classes": 2}, "is not one a training run wrote"),
                       ({"settings": settings, "paths": ["a.png"], "labels": [0], "train": [3], "val": [0],
                         "classes": 2}, "is not one a training run wrote"),
                       ({"paths": []}, "cannot be read")]:
        bad.write_text(json.dumps(body))
        assert_user_error(*run_cli(["prepare", "--int8-check", bad]), says)


# Through train() -----------------------------------------------------------------------------------
# (The verdict on real photos, Lite0 at 224 px on the shared ants/bees, is a figure of `make bench`: its
# `extraction` field in docs/BENCHMARKS.md. Converting Lite0 to INT8 takes about 20 s, too long for the suite.)


def test_train_hands_the_check_over_once_its_run_is_saved(tiny_registered, tmp_path, monkeypatch):
    from tlcore.training.pipeline import train

    monkeypatch.setenv("TLCORE_CPU_FLAGS", " ".join(sorted(VNNI)))
    started = []

    class Started:
        pid, returncode = 1, 0

        def wait(self):
            return 0

    def popen(argv, **kwargs):
        started.append((argv, (tmp_path / "run" / "config.json").is_file()))
        return Started()

    monkeypatch.setattr(paths.subprocess, "Popen", popen)
    data = make_image_folder(tmp_path / "data", n_per_class=10, size=32)
    result = train(data, TrainConfig(backbone=NAME, epochs=2), out=tmp_path / "run")
    assert result["extraction"]["engine"] == "float32" and "background" in result["extraction"]["reason"]
    (argv, saved_first), = started
    assert argv[1:5] == ["-m", "tlcore", "prepare", "--int8-check"] and saved_first  # after the run is saved
    # What that process runs, here (where the tiny backbone is registered).
    code, out, err = run_cli(["prepare", "--int8-check", argv[5], "--json"])
    assert code == 0, err
    assert last_json(out)["checked"] == "this run" and not Path(argv[5]).exists()
