"""Labelling help: a tiny trained run suggests classes for generated unlabelled photos whose true class is known."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASS_COLOURS, SMALL_INPUT, make_image_folder, write_image
from tests.core.test_cli import assert_user_error, last_json, run_cli
from tlcore.data.unlabelled import unlabelled_photos
from tlcore.io.errors import TLError
from tlcore.lab.workspace import Workspace
from tlcore.models.suggest import SuggestConfig, suggest, suggest_labels

CLASSES = ("blue", "red")


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_standin):
    """A run of the Lite0-shaped stand-in trained on red and blue photos (reloaded as the stand-in too)."""
    import tlcore.training.frozen as frozen_mod
    from tests.core.test_finetune import lite0_standin

    root = tmp_path_factory.mktemp("suggest")
    data = make_image_folder(root / "data", n_per_class=10, classes=CLASSES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))  # module scope: outside the autouse fixture
        mp.setattr(frozen_mod, "create_backbone", lite0_standin)
        code, _, stderr = run_cli(["train", data, "--out", root / "run", "--weights", "none",
                                   "--input-size", str(SMALL_INPUT), "--epochs", "40", "--split", "0.8,0.2,0",
                                   "--json"])
    assert code == 0, stderr
    return root / "run"


def unlabelled_folder(root: Path, n=4, seed=7) -> tuple[Path, dict[str, str]]:
    """``root`` with ``n`` new red and ``n`` new blue photos under nested folders; their true class by path."""
    rng = np.random.default_rng(seed)
    truth = {}
    for name in CLASSES:
        for i in range(n):
            path = write_image(root / "batch" / f"{name[0]}{i}" / f"photo_{name}_{i}.png", CLASS_COLOURS[name], 32, rng)
            truth[str(path)] = name
    return root, truth


def png_bytes(colour, seed=0) -> bytes:
    buf = io.BytesIO()
    arr = np.clip(np.array(colour)[None, None, :] + np.random.default_rng(seed).normal(0, 25, (32, 32, 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# The core --------------------------------------------------------------------------------------

def test_suggestions_are_sorted_least_confident_first_and_right_for_clear_colours(run, tmp_path):
    folder, truth = unlabelled_folder(tmp_path / "photos")
    result = suggest(run, folder)
    assert result.classes == list(CLASSES)
    assert result.skipped == []
    assert sorted(s.path for s in result.rows) == sorted(truth)  # every photo, nested folders included
    confidences = [s.confidence for s in result.rows]
    assert confidences == sorted(confidences)
    assert all(0.5 <= c <= 1.0 for c in confidences)  # two classes: the top one has at least half
    assert {s.path: s.suggested for s in result.rows} == truth
    for s in result.rows:
        assert s.as_dict() == {"path": s.path, "suggested": s.suggested, "confidence": s.confidence}
        assert len(s.probabilities) == 2 and max(s.probabilities) == pytest.approx(s.confidence)
    threshold = confidences[len(confidences) // 2]
    assert result.sure(threshold) == [s for s in result.rows if s.confidence >= threshold]


def test_unreadable_files_are_skipped_with_their_reason(run, tmp_path):
    folder, truth = unlabelled_folder(tmp_path / "photos", n=2)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "cut.png").write_bytes(png_bytes(CLASS_COLOURS["red"])[:60])
    (folder / ".hidden.png").write_bytes(png_bytes(CLASS_COLOURS["red"]))  # hidden files are not given photos
    result = suggest(run, folder)
    assert {s.path for s in result.rows} == set(truth)
    reasons = {Path(s["path"]).name: s["reason"] for s in result.skipped}
    assert set(reasons) == {"notes.txt", "empty.jpg", "cut.png"}
    assert reasons["empty.jpg"] == "empty file"
    assert "not an image" in reasons["notes.txt"]
    assert "truncated" in reasons["cut.png"]


def test_a_zip_is_suggested_by_entry_name_and_its_hostile_entries_refused(run, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("shoot/red_1.png", png_bytes(CLASS_COLOURS["red"], 1))
        zf.writestr("shoot/blue_1.png", png_bytes(CLASS_COLOURS["blue"], 2))
        zf.writestr("../escape.png", png_bytes(CLASS_COLOURS["red"], 3))
        zf.writestr("/abs.png", png_bytes(CLASS_COLOURS["red"], 4))
        zf.writestr("inner.zip", b"PK\x03\x04 nested")
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("__MACOSX/shoot/._red_1.png", b"clutter")
    result = suggest(run, archive)
    assert {s.path: s.suggested for s in result.rows} == {"shoot/red_1.png": "red", "shoot/blue_1.png": "blue"}
    refused = {s["path"]: s["reason"] for s in result.skipped}
    assert set(refused) == {"../escape.png", "/abs.png", "inner.zip", "link.png"}
    assert "outside" in refused["../escape.png"] and "symbolic link" in refused["link.png"]
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()


def test_the_zip_extraction_is_removed_afterwards(run, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("red.png", png_bytes(CLASS_COLOURS["red"]))
    suggest(run, archive)
    assert list((tmp_path / "tmp").iterdir()) == []


def folder_with(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing", "does not exist"),
    (lambda root: folder_with(root / "empty", {}), "holds no photo"),
    (lambda root: folder_with(root / "bad", {"x.txt": b"x"}), r"no readable photo among the 1 given \(.*x.txt: not an"),
])
def test_nothing_to_suggest_for_is_one_sentence(run, tmp_path, make, message):
    with pytest.raises(TLError, match=message):
        suggest(run, make(tmp_path))


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    folder, _ = unlabelled_folder(tmp_path / "photos", n=1)
    (tmp_path / "notarun").mkdir()
    with pytest.raises(TLError, match="is not a run directory"):
        suggest(tmp_path / "notarun", folder)
    with pytest.raises(TLError, match="does not exist"):
        suggest(tmp_path / "nothing.keras", folder)


def test_settings_are_checked():
    with pytest.raises(TLError, match="threshold"):
        suggest_labels(SimpleNamespace(classes=["a"]), [], SuggestConfig(threshold=1.5))
    with pytest.raises(TLError, match="no photos"):
        suggest_labels(SimpleNamespace(classes=["a"]), [])


def test_progress_hears_zero_then_every_batch(run, tmp_path):
    folder, truth = unlabelled_folder(tmp_path / "photos", n=3)
    heard = []
    suggest(run, folder, SuggestConfig(batch_size=4), on_progress=lambda done, total: heard.append((done, total)))
    assert heard == [(0, 6), (4, 6), (6, 6)]


def test_a_zip_without_any_file_is_refused(tmp_path):
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../out.png", b"x")
    with pytest.raises(TLError, match=r"'empty.zip' holds no photo \(1 entries refused"):
        unlabelled_photos(archive, tmp_path / "x")


# The command line ------------------------------------------------------------------------------

def test_cli_json_lists_suggestions_least_confident_first(run, tmp_path):
    folder, truth = unlabelled_folder(tmp_path / "photos")
    (folder / "notes.txt").write_text("x")
    code, stdout, stderr = run_cli(["suggest", run, folder, "--json"])
    assert code == 0, stderr
    rows = last_json(stdout)
    assert [set(r) for r in rows] == [{"path", "suggested", "confidence"}] * len(truth)
    assert [r["confidence"] for r in rows] == sorted(r["confidence"] for r in rows)
    assert {r["path"]: r["suggested"] for r in rows} == truth
    assert stderr.splitlines() == [f"skipped {folder / 'notes.txt'}: not an image file Pillow can read"]


def test_cli_table_reads_without_json(run, tmp_path):
    folder, truth = unlabelled_folder(tmp_path / "photos", n=2)
    code, stdout, stderr = run_cli(["suggest", run, folder, "--threshold", "0"])
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["confidence", "suggested", "photo"]
    assert len(lines) == len(truth) + 2
    for line in lines[1:-1]:
        confidence, suggested, path = line.split()
        assert confidence.endswith("%") and truth[path] == suggested
    assert lines[-1].startswith(f"{len(truth)} of {len(truth)} suggestions at or above 0% confidence")


@pytest.mark.parametrize("args, fragment", [
    (["{tmp}/notarun", "{tmp}/photos"], "is not a run directory"),
    (["{run}", "{tmp}/missing"], "does not exist"),
    (["{run}", "{tmp}/photos", "--threshold", "2"], "threshold"),
    (["{run}", "{tmp}/bad"], "no readable photo"),
])
def test_cli_bad_inputs_are_one_line_and_status_2(run, tmp_path, args, fragment):
    unlabelled_folder(tmp_path / "photos", n=1)
    (tmp_path / "notarun").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    code, stdout, stderr = run_cli(["suggest", *[a.format(tmp=tmp_path, run=run) for a in args]])
    assert_user_error(code, stdout, stderr, fragment)


# Accepting into the workspace ------------------------------------------------------------------

@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def test_accepted_suggestions_go_to_their_classes_and_leave_the_waiting_folder(run, ws):
    added, rejected = ws.add_unlabelled([("r.png", png_bytes(CLASS_COLOURS["red"], 1)),
                                         ("b.png", png_bytes(CLASS_COLOURS["blue"], 2)),
                                         ("other.png", png_bytes(CLASS_COLOURS["blue"], 3)),
                                         ("notes.txt", b"hello")])
    assert [p.name for p in added] == ["r.png", "b.png", "other.png"]
    assert [r["name"] for r in rejected] == ["notes.txt"]
    assert not ws.classes()  # waiting photos are not data yet: training never sees them
    from tlcore.data.unlabelled import UnlabelledPhoto
    from tlcore.models.run import load_run

    result = suggest_labels(load_run(run), [UnlabelledPhoto(p.name, p) for p in ws.unlabelled()])
    choices = {s.path: s.suggested for s in result.rows if s.path != "other.png"}
    assert choices == {"r.png": "red", "b.png": "blue"}
    added, rejected = ws.accept_unlabelled(choices)
    assert rejected == []
    assert ws.counts() == {"blue": 1, "red": 1}
    assert [p.name for p in ws.unlabelled()] == ["other.png"]
    ws.discard_unlabelled()
    assert ws.unlabelled() == []


def test_accepting_checks_each_photo_again(ws):
    ws.add_unlabelled([("a.png", png_bytes(CLASS_COLOURS["red"])), ("b.png", png_bytes(CLASS_COLOURS["red"], 2))])
    (ws.unlabelled_dir / "b.png").write_bytes(b"changed since")  # a photo damaged while it waited
    added, rejected = ws.accept_unlabelled({"a.png": "red", "b.png": "red", "../settings.json": "red",
                                            "c.png": "red", "a.png_": "../up"})
    assert [p.name for p in added] == ["a.png"]
    reasons = {r["name"]: r["reason"] for r in rejected}
    assert set(reasons) == {"b.png", "../settings.json", "c.png", "a.png_"}
    assert "not an image" in reasons["b.png"]
    assert "no such photo" in reasons["c.png"]
    assert [p.name for p in ws.unlabelled()] == ["b.png"]  # the refused photo keeps waiting


def test_accepting_respects_the_caps(ws):
    ws.add_unlabelled([("a.png", png_bytes(CLASS_COLOURS["red"]))])
    ws.max_file_mb = 0.0001
    added, rejected = ws.accept_unlabelled({"a.png": "red"})
    assert added == [] and "over the limit" in rejected[0]["reason"]


def test_a_zip_of_unlabelled_photos_is_flattened_and_checked(ws, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("day1/a.png", png_bytes(CLASS_COLOURS["red"]))
        zf.writestr("day2/a.png", png_bytes(CLASS_COLOURS["blue"]))
        zf.writestr("day2/readme.txt", b"hi")
        zf.writestr("../../evil.png", png_bytes(CLASS_COLOURS["red"]))
    added, rejected = ws.add_unlabelled_zip(buf.getvalue())
    assert sorted(p.name for p in added) == ["a.png", "a_1.png"]
    assert {r["name"] for r in rejected} == {"day2/readme.txt", "../../evil.png"}
    with pytest.raises(TLError, match="the ZIP"):
        ws.add_unlabelled_zip(b"not a zip at all")
