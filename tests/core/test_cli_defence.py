"""CLI robustness and harden on a saved run (small stand-in backbone)."""
from __future__ import annotations

import json

from tests.core.test_cli import read_progress, run_cli
from tests.core.test_events import assert_each_phase_announced, phase_story
from tests.core.test_finetune import standin, trained_run  # noqa: F401 - fixtures


def test_robustness_json_and_table(trained_run, tmp_path):
    run_dir, _ = trained_run
    code, out, err = run_cli(["robustness", run_dir, "--epsilons", "0,0.05", "--steps", "2", "--limit", "4", "--json",
                              "--progress", tmp_path / "events.jsonl"])
    assert code == 0, err
    curve = json.loads(out.strip().splitlines()[-1])
    assert curve["epsilons"] == [0.0, 0.05] and curve["n"] == 4 and curve["steps"] == 2
    assert len(curve["fgsm"]) == len(curve["pgd"]) == 2
    events = read_progress(tmp_path / "events.jsonl")
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "measuring"]
    # The photos attacked over the 4 points (2 methods, 2 epsilons), counted from 0, before each point is said.
    measuring = [(e["done"], e["total"]) for e in events if e.get("phase") == "measuring"]
    assert measuring[0] == (0, 16) and measuring[-1] == (16, 16)
    assert [e["type"] for e in events if e["type"] != "phase"] == ["start"] + ["robustness"] * 4 + ["done"]
    code, out, _ = run_cli(["robustness", run_dir, "--epsilons", "0,0.05", "--steps", "1", "--limit", "2"])
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[1].split()[0] == "epsilon" and lines[2].split()[0] == "fgsm" and lines[3].split()[0] == "pgd"


def test_harden_writes_the_hardened_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    progress = tmp_path / "events.jsonl"
    code, out, err = run_cli(["harden", run_dir, "--out", tmp_path / "hard", "--epochs", "1", "--epsilon", "0.02",
                              "--epsilons", "0,0.02", "--curve-images", "2", "--curve-steps", "1",
                              "--progress", progress, "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["run_dir"] == str(tmp_path / "hard") and (tmp_path / "hard" / "model.weights.h5").is_file()
    events = read_progress(progress)
    assert_each_phase_announced(events)
    assert phase_story(events) == ["starting", "loading", "measuring", "embedding", "hardening", "measuring",
                                   "evaluating", "saving"]
    hardening = [(e["done"], e["total"], e["epoch"], e["epochs"]) for e in events if e.get("phase") == "hardening"]
    assert hardening[0][0] == 0 and hardening[-1][0] == hardening[-1][1] and {h[2:] for h in hardening} == {(1, 1)}
    assert [e["type"] for e in events if e["type"] != "phase"] == ["start", "epoch", "done"]


def test_user_errors_are_one_line(trained_run, tmp_path):
    run_dir, _ = trained_run
    for argv, fragment in ((["robustness", run_dir, "--epsilons", "a,b"], "numbers separated by commas"),
                           (["robustness", run_dir, "--epsilons", "0,2"], "epsilon 2.0 is outside 0..1"),
                           (["harden", run_dir, "--epochs", "0"], "epochs must be a whole number >= 1, got 0"),
                           (["robustness", tmp_path], "is not a run directory")):
        code, out, err = run_cli(argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and fragment in err, (argv, err)
