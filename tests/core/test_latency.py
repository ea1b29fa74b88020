"""The latency helper (tlcore.models.latency): untimed warm-up calls, then the median timed call in milliseconds.

A fake clock makes every figure exact: no assertion depends on how fast this machine is.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS, write_image
from tests.core.test_tflite_model import FakeInterpreter, fake_model
from tlcore.export.verify import keras_reference
from tlcore.models.latency import median_latency_ms


class FakeModel:
    """Each call "takes" the next of ``durations`` seconds on a clock that only it moves."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0
        self.clock_reads = []  # the call count at each clock reading

    def clock(self) -> float:
        self.clock_reads.append(self.calls)
        return self.now

    def run_once(self) -> None:
        self.now += self.durations[self.calls]
        self.calls += 1


def test_warm_up_calls_run_first_and_are_not_timed():
    # Two slow warm-up calls, then five timed ones whose median is 0.004 s.
    model = FakeModel([9.0, 7.0, 0.003, 0.005, 0.004, 0.100, 0.002])
    ms = median_latency_ms(model.run_once, repeats=5, warmup=2, clock=model.clock)
    assert ms == pytest.approx(4.0)
    assert model.calls == 7
    # The clock is read around each timed call only: never before the warm-up is over.
    assert model.clock_reads == [2, 3, 3, 4, 4, 5, 5, 6, 6, 7]


def test_an_even_number_of_repeats_takes_the_middle_pair_s_mean():
    model = FakeModel([0.001, 0.002, 0.010, 0.003])
    assert median_latency_ms(model.run_once, repeats=4, warmup=0, clock=model.clock) == pytest.approx(2.5)
    assert model.calls == 4


def test_no_repeats_has_no_median():
    model = FakeModel([1.0])
    with pytest.warns(RuntimeWarning):
        ms = median_latency_ms(model.run_once, repeats=0, warmup=1, clock=model.clock)
    assert math.isnan(ms) and model.calls == 1 and model.clock_reads == []


def test_the_default_clock_is_a_real_one():
    calls = []
    ms = median_latency_ms(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and isinstance(ms, float) and ms >= 0.0


# Its two users: the TFLite runtime and the Keras reference of an export's verification -----------------

class CountingInterpreter(FakeInterpreter):
    def __init__(self):
        super().__init__(np.float32, (0.0, 0), np.float32, (0.0, 0), [0.25, 0.75])
        self.invokes = 0

    def invoke(self):
        self.invokes += 1


def test_tflite_latency_warms_up_three_times_then_times_twenty_runs():
    interp = CountingInterpreter()
    model = fake_model(interp)
    assert model.latency_ms(np.zeros((2, 2, 3), np.float32)) >= 0.0
    assert interp.invokes == 3 + 20
    model.latency_ms(np.zeros((2, 2, 3), np.float32), repeats=4, warmup=0)
    assert interp.invokes == 23 + 4


def test_keras_reference_warms_up_once_then_times_each_repeat_on_one_image(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png", CLASS_COLOURS["red"], 16, np.random.default_rng(i)))
             for i in range(2)]

    class FakeRun:
        input_size = 8

        def __init__(self):
            self.batches = []

        def predict_files(self, files):
            return np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), [0, 1], []

        def predict_batch(self, images):
            self.batches.append(images.shape)

    run = FakeRun()
    reference = keras_reference(run, paths, [0, 1], repeats=5)
    assert run.batches == [(1, 8, 8, 3)] * (1 + 5)
    assert reference["latency_ms"] >= 0.0 and reference["accuracy"] == 1.0
