"""The vocabulary of a job's events: phase events, the phase a follower shows, and the ticker that paces counts."""
from __future__ import annotations

import pytest

from tlcore.jobs import events as ev
from tlcore.jobs.events import Ticker, current_phase, phase_event


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_phase_event_carries_its_counts_and_labels():
    assert phase_event(ev.STARTING) == {"type": "phase", "phase": "starting"}
    assert phase_event(ev.VERIFYING, 3, 10, format="tflite-int8") == {
        "type": "phase", "phase": "verifying", "done": 3, "total": 10, "format": "tflite-int8"}
    assert phase_event(ev.TRAINING, epochs=4, name=None) == {"type": "phase", "phase": "training", "epochs": 4}


@pytest.mark.parametrize("call", [lambda: phase_event("thinking"), lambda: phase_event(ev.LOADING, colour="red")])
def test_a_phase_outside_the_vocabulary_is_refused(call):
    with pytest.raises(ValueError, match="unknown phase"):
        call()


def test_every_phase_is_named_once():
    assert len(set(ev.PHASES)) == len(ev.PHASES)
    assert ev.PHASES[0] == ev.STARTING


def timed(events):
    return [{**e, "time": float(i)} for i, e in enumerate(events)]


def test_current_phase_follows_phases_and_counts():
    assert current_phase([]) is None
    assert current_phase(timed([{"type": "start"}])) is None
    events = timed([phase_event(ev.STARTING), phase_event(ev.LOADING), {"type": "start", "epochs": 2},
                    {"type": "extract", "done": 0, "total": 8}, phase_event(ev.LOADING), phase_event(ev.PREPARING),
                    {"type": "extract", "done": 4, "total": 8}, {"type": "extract", "done": 8, "total": 8}])
    assert current_phase(events[:2]) == {"phase": "loading", "since": 1.0, "time": 1.0}
    assert current_phase(events[:3])["phase"] == "loading"  # the start event is no phase
    assert current_phase(events[:4]) == {"phase": "embedding", "since": 3.0, "time": 3.0, "done": 0, "total": 8}
    assert current_phase(events[:6])["phase"] == "preparing"
    # Embedding again after preparing: a new stretch of the phase, with its latest count.
    assert current_phase(events) == {"phase": "embedding", "since": 6.0, "time": 7.0, "done": 8, "total": 8}


def test_a_count_of_the_same_phase_keeps_when_it_began_and_new_labels_begin_anew():
    events = timed([phase_event(ev.CONVERTING, format="tflite-int8"),
                    phase_event(ev.CALIBRATING, 0, 3, format="tflite-int8"),
                    phase_event(ev.CALIBRATING, 2, 3, format="tflite-int8"),
                    phase_event(ev.VERIFYING, 0, 5, format="tflite-int8"),
                    phase_event(ev.VERIFYING, 0, 5, format="tflite-float32")])
    assert current_phase(events[:3]) == {"phase": "calibrating", "since": 1.0, "time": 2.0, "done": 2, "total": 3,
                                         "format": "tflite-int8"}
    assert current_phase(events) == {"phase": "verifying", "since": 4.0, "time": 4.0, "done": 0, "total": 5,
                                     "format": "tflite-float32"}


def test_waiting_leaves_no_phase():
    events = timed([phase_event(ev.STARTING), {"type": "waiting", "position": 1, "slots": 2}])
    assert current_phase(events) is None
    assert current_phase(events + timed([phase_event(ev.LOADING)]))["phase"] == "loading"


def test_the_ticker_reports_at_once_then_paced_then_the_last():
    clock, seen = FakeClock(), []
    tick = Ticker(lambda done, total: seen.append((clock.now, done, total)), 10, every=0.25, clock=clock)
    tick(0)
    for done in range(1, 11):
        clock.now += 0.1
        tick(done)
    tick(10)  # the last count is said once
    assert seen[0] == (0.0, 0, 10) and seen[-1][1:] == (10, 10)
    assert [done for _, done, _ in seen] == [0, 3, 6, 9, 10]
    assert all(b[0] - a[0] <= 0.25 + 0.1 + 1e-9 for a, b in zip(seen, seen[1:]))


def test_a_ticker_without_a_listener_does_nothing():
    Ticker(None, 3)(1)


# Helpers for the tests of real jobs (test_cli, test_jobs, test_cli_export, the Export page) -------------------

_EPOCH_PHASES = {"head": ev.TRAINING, "fine_tune": ev.FINE_TUNING, "adversarial": ev.HARDENING}


def phase_story(events) -> list[str]:
    """The phases a follower saw, in order, each stretch once: a phase event (or an ``extract`` event, which
    counts embedding) whose phase and labels differ from the stretch before begins a new one, as in
    :func:`current_phase`."""
    story, last = [], None
    for e in events:
        if e["type"] == ev.PHASE:
            key = (e["phase"], {k: e[k] for k in ev.LABELS if k in e})
        elif e["type"] == ev.EXTRACT:
            key = (ev.EMBEDDING, {})
        else:
            continue
        if key != last:
            story.append(key[0])
            last = key
    return story


def assert_each_phase_announced(events) -> None:
    """What a job owes its follower, read from its events alone (no clock): its first event says it started, it
    says it is loading before the command's work (TensorFlow) starts, embedding is counted from 0 before any photo
    is embedded, and every epoch is preceded by its phase's announcement."""
    kinds = [e["type"] for e in events]
    assert events[0] == {**events[0], "type": "phase", "phase": ev.STARTING}, events[:3]
    loading = next(i for i, e in enumerate(events) if e.get("phase") == ev.LOADING)
    if ev.START in kinds:
        assert loading < kinds.index(ev.START)
    extract = [e for e in events if e["type"] == ev.EXTRACT]
    if extract:
        assert extract[0]["done"] == 0
        assert ev.EPOCH not in kinds or kinds.index(ev.EXTRACT) < kinds.index(ev.EPOCH)
    for i, e in enumerate(events):
        if e["type"] == ev.EPOCH:
            wanted = _EPOCH_PHASES[e["phase"]]
            assert any(p.get("type") == ev.PHASE and p["phase"] == wanted for p in events[:i]), (e, kinds[:i])
    assert kinds[-1] in (ev.DONE, ev.ERROR)
