"""Issue 17, item 5: a page following a job says the phase it is in, in words, with a bar that moves.

The jobs here are planted: their worker is this test process (alive, so the job reads as running) and their
events are written as a worker writes them, so each state of a job is drawn without waiting for one.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from tlcore.jobs import events as ev
from tlcore.jobs.events import phase_event
from tlcore.jobs.runner import EventWriter
from ui.frame.i18n import translate


def planted(tmp_path, kind: str, events: list[dict], name: str = "job"):
    """A running job of ``kind`` whose events so far are ``events``."""
    job = tmp_path / name
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"kind": kind, "pid": os.getpid(), "started": time.time()}))
    write = EventWriter(job / "events.jsonl")
    for event in events:
        write(event)
    return job


def _follow(view: str, job: str):
    from pathlib import Path

    from ui.views.adversarial import show_harden, show_robustness
    from ui.views.export import show_export
    from ui.views.follow import show_job
    from ui.views.leaderboard import show_leaderboard

    shows = {"train": show_job, "export": show_export, "robustness": show_robustness, "harden": show_harden,
             "leaderboard": lambda folder: show_leaderboard(folder, "good")}
    shows[view](Path(job))


def bar(view: str, job, lang: str = "en") -> tuple[int, str]:
    """(percent, words) of the job's progress bar as the page draws it."""
    at = AppTest.from_function(_follow, args=(view, str(job)), default_timeout=30)
    at.session_state["tl_language"] = lang  # the views' texts, without a session's workspace
    at.run()
    assert not at.exception, at.exception
    (progress,) = at.get("progress")
    return progress.proto.value, progress.proto.text


STARTED = [phase_event(ev.STARTING), phase_event(ev.LOADING)]
TRAIN_START = {"type": "start", "command": "train", "epochs": 2, "fine_tune_epochs": 2}


def test_before_its_first_event_a_job_is_starting(tmp_path):
    assert bar("train", planted(tmp_path, "train", [])) == (0, "Starting…")


def test_a_phase_without_a_count_says_how_long_it_has_taken(tmp_path):
    job = planted(tmp_path, "train", STARTED + [TRAIN_START, {"type": "extract", "done": 0, "total": 16},
                                                phase_event(ev.LOADING), phase_event(ev.PREPARING)])
    value, text = bar("train", job)
    assert value == 0
    prefix = "Preparing the backbone for this machine (the first time only; later runs reuse it)… ("
    assert text.startswith(prefix) and text.endswith(" s)") and text[len(prefix):-3].isdigit(), text


def test_embedding_moves_the_bar_photo_by_photo(tmp_path):
    job = planted(tmp_path, "train", STARTED + [TRAIN_START, {"type": "extract", "done": 0, "total": 16},
                                                {"type": "extract", "done": 4, "total": 16}])
    assert bar("train", job) == (25, "Embedding photos: 4/16")
    assert bar("train", job, "fr") == (25, "Encodage des photos : 4/16")


def test_training_counts_epochs_then_fine_tuning_batches_within_them(tmp_path):
    head = [phase_event(ev.TRAINING, epochs=2)] + [{"type": "epoch", "epoch": e, "phase": "head", "loss": 0.1}
                                                   for e in (1, 2)]
    job = planted(tmp_path, "train", STARTED + [TRAIN_START] + head[:2], "head")
    assert bar("train", job) == (25, "Epoch 1/4")
    tuning = [phase_event(ev.FINE_TUNING, 0, 4, epoch=1, epochs=2), phase_event(ev.FINE_TUNING, 2, 4, epoch=1, epochs=2)]
    job = planted(tmp_path, "train", STARTED + [TRAIN_START] + head + tuning, "tuning")
    # Two head epochs and half of the first fine-tuning epoch: 2.5 of 4.
    assert bar("train", job) == (62, "Fine-tuning, epoch 1 of 2: batch 2/4")


def test_an_export_says_each_phase_with_its_photos(tmp_path):
    start = {"type": "start", "command": "export", "formats": ["tflite-float32", "tflite-int8"]}
    written = [{"type": "export", "step": 0, "stage": "exported", "format": "tflite-float32"}]
    job = planted(tmp_path, "export", STARTED + [start] + written + [
        phase_event(ev.CONVERTING, format="tflite-int8"), phase_event(ev.CALIBRATING, 0, 200, format="tflite-int8"),
        phase_event(ev.CALIBRATING, 50, 200, format="tflite-int8")], "calibrating")
    assert bar("export", job) == (25, "Calibrating tflite-int8: 50/200 photos")
    # Converting has no count: the bar shows the formats written (1 of 2), the words how long it has taken.
    job = planted(tmp_path, "export", STARTED + [start] + written + [phase_event(ev.CONVERTING, format="tflite-int8")],
                  "converting")
    value, text = bar("export", job)
    assert value == 50 and text.startswith("Converting to tflite-int8… (") and text.endswith(" s)")
    job = planted(tmp_path, "export", STARTED + [start] + [phase_event(ev.VERIFYING, 3, 4, format="tflite-float32")],
                  "verifying")
    assert bar("export", job, "fr") == (75, "Vérification de tflite-float32 face à Keras : 3/4 photos")


def test_robustness_and_hardening_count_the_photos_attacked(tmp_path):
    job = planted(tmp_path, "robustness", STARTED + [{"type": "start", "command": "robustness"},
                                                     phase_event(ev.MEASURING, 0, 56), phase_event(ev.MEASURING, 14, 56)])
    assert bar("robustness", job) == (25, "Measuring robustness: 14/56 photos attacked")
    start = {"type": "start", "command": "harden", "epochs": 2, "fine_tune_epochs": 0}
    job = planted(tmp_path, "harden", STARTED + [start, phase_event(ev.MEASURING, 7, 28)], "before")
    assert bar("harden", job) == (25, "Measuring robustness before hardening: 7/28 photos attacked…")
    job = planted(tmp_path, "harden", STARTED + [start, phase_event(ev.MEASURING, 28, 28), phase_event(ev.EMBEDDING, 8, 8),
                                                 phase_event(ev.HARDENING, 4, 8, epoch=1, epochs=2)], "epoch")
    assert bar("harden", job) == (50, "Adversarial training, epoch 1 of 2: 4/8 photos attacked")
    job = planted(tmp_path, "harden", STARTED + [start, {"type": "epoch", "epoch": 1, "phase": "adversarial"},
                                                 phase_event(ev.MEASURING, 21, 28)], "after")
    assert bar("harden", job) == (75, "Measuring robustness after hardening: 21/28 photos attacked…")


def test_the_leaderboard_says_when_a_backbone_is_being_built(tmp_path):
    where = {"type": "leaderboard", "stage": "embed", "backbone": "good", "index": 0, "count": 2, "total": 10}
    job = planted(tmp_path, "leaderboard", STARTED + [{"type": "start", "command": "leaderboard"},
                                                      {**where, "done": 0}, phase_event(ev.LOADING, name="good")])
    value, text = bar("leaderboard", job)
    assert value == 0 and text.startswith("good (1 of 2): Loading TensorFlow and the model… (")
    job = planted(tmp_path, "leaderboard", STARTED + [{"type": "start", "command": "leaderboard"},
                                                      {**where, "done": 0}, phase_event(ev.LOADING, name="good"),
                                                      {**where, "done": 5}], "embedding")
    assert bar("leaderboard", job) == (25, "good (1 of 2): 5/10 photos embedded…")


@pytest.mark.parametrize("phase", ev.PHASES)
def test_every_phase_has_words_in_every_language(phase):
    values = {"done": 1, "total": 2, **{k: "x" for k in ev.LABELS}}
    for lang in ("en", "fr"):
        assert translate(f"phase.{phase}", lang, **values) != f"phase.{phase}"
