"""``tlcore project save|open|runs``: the project functions from the command line, errors as one line."""
from __future__ import annotations

import json

from tests.core.test_experiments import fake_job
from tlcore.cli import main
from tlcore.io.quota import MB
from tlcore.lab.workspace import Workspace
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


def test_save_says_the_size_warns_and_refuses_as_the_runs_page_does(tmp_path, capsys, monkeypatch):
    """Issue 17, item 7: the CLI calls the same check as the page (tlcore.lab.project.save_check)."""
    origin = tmp_path / "origin"
    fake_job(origin / "jobs", "run-a", TrainConfig())
    assert main(["project", "save", str(origin), str(tmp_path / "proj"), "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "proj").rglob("*") if p.is_file())
    assert saved["bytes"] == on_disk and saved["zip_bytes"] >= on_disk and saved["warnings"] == []

    # An upload cap (the dashboard's server.maxUploadSize) every photo fits but the ZIP does not: saved, with a warning.
    monkeypatch.setattr(Workspace, "max_file_mb", 5_000 / MB)
    assert main(["project", "save", str(origin), str(tmp_path / "proj")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"saved 1 run(s) to {tmp_path / 'proj'}: 0.0 MB, at most 0.0 MB as a ZIP")
    assert err.startswith("warning: as a ZIP the project 'proj' would take up to ") and len(err.splitlines()) == 1
    assert "over the limit of 0.00476837 MB per upload" in err

    # A session cap below the project: refused in one line, nothing written.
    monkeypatch.setenv("TLCORE_MAX_SESSION_MB", "0.001")
    assert main(["project", "save", str(origin), str(tmp_path / "big")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: saving the project 'big': it would take 0.0 MB once opened, over the limit of "
                          "0.001 MB per session, so no session could open it") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "big").exists()
