"""The frozen backbone's one home (tlcore.training.frozen): preparing an engine before any job needs it, and the
conversion lock that makes concurrent first jobs convert once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.core.test_engine import SIZE, tiny_backbone
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.backbones import registry
from tlcore.backbones.registry import BackboneSpec
from tlcore.io import paths
from tlcore.io import paths
from tlcore.training import engine, frozen
from tlcore.training.engine import TFLiteEncoder, engine_path, fast_encoder
from tlcore.training.frozen import FrozenBackbone, engine_ready, prepare_engine, prepare_in_background

NAME = "tiny_frozen_test"


@pytest.fixture
def tiny_registered(monkeypatch, isolated_cache):
    """A registry entry whose "ImageNet" backbone is the tiny model of test_engine (cacheable, converts in a
    second); counts its builds."""
    builds = []
    spec = BackboneSpec(NAME, SIZE, "lite", 8, 0, 0.0, 0.0, "tests", True)

    def build(spec, weights, input_shape, pooling):
        builds.append(input_shape)
        return tiny_backbone()

    monkeypatch.setitem(registry._REGISTRY, NAME, (spec, build))
    return builds


def test_prepared_engine_is_the_one_a_job_then_uses_without_building_anything(tiny_registered):
    assert not engine_ready(NAME)
    path = prepare_engine(NAME)
    assert path == engine_path(FrozenBackbone(NAME).key, SIZE) and path.is_file()
    assert engine_ready(NAME) and len(tiny_registered) == 1

    phases = []
    job = FrozenBackbone(NAME, on_phase=lambda phase, **_: phases.append(phase))
    encoder = job.encoder()
    assert isinstance(encoder, TFLiteEncoder)
    assert len(tiny_registered) == 1 and phases == []  # nothing built, nothing to prepare: the job just embeds
    x = np.full((1, SIZE, SIZE, 3), 120, np.uint8)
    np.testing.assert_allclose(encoder(x), tiny_backbone().predict_on_batch(x.astype("float32")), rtol=1e-4,
                               atol=1e-4)


def test_a_conversion_under_way_is_waited_for_and_not_repeated(tiny_registered, monkeypatch, tmp_path):
    import fcntl
    import os

    converted = []
    real = engine.convert_backbone
    monkeypatch.setattr(engine, "convert_backbone", lambda model: converted.append(model) or real(model))
    key = FrozenBackbone(NAME).key
    path = engine_path(key, SIZE)
    path.parent.mkdir(parents=True)
    ready = real(tiny_backbone())  # what the process holding the lock is converting

    waiting, phases, result = threading.Event(), [], {}

    def on_phase(phase, **_):
        phases.append(phase)
        waiting.set()

    lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another process (the server's start) is converting
    job = threading.Thread(target=lambda: result.update(encoder=fast_encoder(
        lambda: pytest.fail("the waiting job built the backbone"), key, SIZE, on_phase=on_phase)))
    job.start()
    assert waiting.wait(60), "the job did not say it waits for the preparation"
    assert phases == ["preparing"] and job.is_alive()
    path.write_bytes(ready)
    os.close(lock)  # the converting process is done: its file is there
    job.join(60)
    assert isinstance(result["encoder"], TFLiteEncoder) and converted == []


def test_the_server_start_prepares_only_what_is_missing(tiny_registered, monkeypatch):
    started = []
    monkeypatch.setattr(paths.subprocess, "Popen", lambda argv, **kw: started.append((argv, kw)) or _Ended())
    monkeypatch.setattr(frozen, "engine_ready", lambda: False)
    assert isinstance(prepare_in_background(), _Ended)
    argv, kw = started[0]
    assert argv[1:] == ["-m", "tlcore", "prepare", "--json"] and kw["start_new_session"]
    assert kw["stderr"].name.endswith("engines/prepare.log")

    monkeypatch.setattr(frozen, "engine_ready", lambda: True)
    assert prepare_in_background() is None and len(started) == 1  # cached already: no process at all


class _Ended:
    returncode, pid = 0, 1

    def wait(self):
        return 0


def test_prepare_command(tiny_registered):
    code, out, err = run_cli(["prepare", "--backbone", NAME, "--json"])
    assert code == 0, err
    result = last_json(out)
    assert result["engine"] == str(engine_path(FrozenBackbone(NAME).key, SIZE)) and result["backbone"] == NAME
    assert_user_error(*run_cli(["prepare", "--backbone", "nope"]), "unknown backbone 'nope'")
