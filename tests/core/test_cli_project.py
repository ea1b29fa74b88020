"""``tlcore project save|open|runs``: the project functions from the command line, errors as one line."""
from __future__ import annotations

import json

from tests.core.test_experiments import fake_job
from tlcore.cli import main
from tlcore.training.config import TrainConfig


def test_save_open_and_list_runs(tmp_path, capsys):
    origin = tmp_path / "origin"
    fake_job(origin / "jobs", "run-a", TrainConfig(epochs=4, seed=9))
    assert main(["project", "save", str(origin), str(tmp_path / "proj"), "--name", "demo"]) == 0
    assert "saved 1 run(s) to" in capsys.readouterr().out

    assert main(["project", "open", str(tmp_path / "proj"), str(tmp_path / "copy"), "--json"]) == 0
    opened = json.loads(capsys.readouterr().out)
    assert (opened["name"], opened["runs"]) == ("demo", 1)

    assert main(["project", "runs", str(tmp_path / "copy"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["name"], r["epochs"], r["seed"]) for r in rows] == [("run-a", 4, 9)]
    assert main(["project", "runs", str(tmp_path / "copy")]) == 0
    assert "run-a  efficientnet_lite0  weights=imagenet  epochs=4" in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["project", "runs", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {str(tmp_path / 'nowhere')!r} is not a workspace (it has no data/ or jobs/ folder)"
    assert main(["project", "open", str(tmp_path)]) == 2
    assert "project open takes PROJECT WORKSPACE, got 1 path(s)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["project", "open", str(tmp_path / "empty"), str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "is not a Transfer Lab project" in err and len(err.strip().splitlines()) == 1
