"""Demo links (tlcore.lab.demos, issue 21 item 3): a token shows one run of one session and nothing else, and a
token or link file that was not made here, or has expired, shows nothing."""
from __future__ import annotations

import json
import os

import pytest

from tlcore.lab import demos
from tlcore.lab.demos import DEMO_HOURS, create_demo, end_demo, find_demo
from tlcore.lab.workspace import Workspace, new_session_id


def fake_run(folder):
    """A folder that is_run takes for a run (what a link names; the run's model is the pages' to load)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def session(isolated_cache):
    sid = new_session_id()
    ws = Workspace.for_session(sid)
    run = fake_run(ws.jobs_dir / "run-1" / "run")
    onnx = ws.jobs_dir / "export-1" / "model.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"onnx")
    return sid, ws, run, onnx


def test_a_link_shows_its_run_and_onnx_export_until_it_expires_or_ends(session):
    sid, ws, run, onnx = session
    token = create_demo(ws, sid, run, onnx, now=1000.0)
    assert len(token) == 32 and sid not in token
    demo = find_demo(token, now=1000.0 + 60)
    assert (demo.session, demo.run_dir, demo.onnx) == (sid, run.resolve(), onnx.resolve())
    assert demo.expires == 1000.0 + DEMO_HOURS * 3600
    assert find_demo(token, now=1000.0 + DEMO_HOURS * 3600 + 1) is None  # expired: and its file is gone
    assert not (demos._folder() / f"{token}.json").exists()
    other = create_demo(ws, sid, run)
    assert find_demo(other).onnx is None  # no export: the server classifies
    end_demo(other)
    assert find_demo(other) is None


@pytest.mark.parametrize("token", [None, 7, "", "0" * 31, "0" * 33, "G" * 32, "../" + "0" * 29, "A" * 32])
def test_anything_but_a_token_shows_nothing(session, token):
    assert find_demo(token) is None


def test_only_a_run_and_an_export_of_the_session_can_be_shared(session, tmp_path):
    sid, ws, run, onnx = session
    elsewhere = fake_run(tmp_path / "elsewhere" / "run")
    with pytest.raises(ValueError, match="is not a run of this session"):
        create_demo(ws, sid, elsewhere)
    with pytest.raises(ValueError, match="is not an ONNX export of this session"):
        create_demo(ws, sid, run, tmp_path / "model.onnx")


@pytest.mark.parametrize("change", [
    {"run": "../../../etc"}, {"run": "/etc"}, {"run": 3}, {"session": "forged"}, {"expires": "never"},
    {"onnx": "../../x.onnx"},
])
def test_a_link_file_changed_by_hand_shows_nothing_outside_its_session(session, change):
    sid, ws, run, onnx = session
    token = create_demo(ws, sid, run, onnx)
    path = demos._folder() / f"{token}.json"
    record = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps(record))
    demo = find_demo(token)
    if "onnx" in change:  # the run still shows; the export that leads outside is dropped (the server classifies)
        assert demo is not None and demo.onnx is None
    else:
        assert demo is None


def test_a_link_file_that_is_a_link_or_too_big_or_whose_session_is_gone_shows_nothing(session, tmp_path):
    import shutil

    sid, ws, run, onnx = session
    token = create_demo(ws, sid, run, onnx)
    path = demos._folder() / f"{token}.json"
    elsewhere = tmp_path / "record.json"
    elsewhere.write_text(path.read_text())
    path.unlink()
    os.symlink(elsewhere, path)
    assert find_demo(token) is None
    path.unlink()
    path.write_text(" " * 5000)
    assert find_demo(token) is None
    good = create_demo(ws, sid, run, onnx)
    shutil.rmtree(ws.root)  # the session expired and was cleaned up
    assert find_demo(good) is None
    assert not ws.root.exists()  # and looking did not make it again
