"""`python -m tlcore check`: the health report as JSON or a table, and user errors as one line, exit 2."""
from __future__ import annotations

from tests.conftest import make_image_folder
from tests.core.test_cli import last_json, run_cli
from tlcore.data.datasets import load_dataset, stratified_split


def test_check_json_has_the_report_keys_and_finds_a_planted_copy(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=10, size=40)
    (data / "red" / "copy.png").write_bytes((data / "red" / "red_0.png").read_bytes())
    code, out, err = run_cli(["check", data, "--json", "--split", "1,0,0"])
    assert code == 0, err
    report = last_json(out)
    assert {"counts", "duplicates", "leaks", "skipped", "imbalance_ratio", "warnings"} <= set(report)
    assert report["counts"]["red"] == {"train": 11, "val": 0, "test": 0, "total": 11}
    assert [sorted(m["path"].rsplit("/", 1)[1] for m in g) for g in report["duplicates"]] == [["copy.png", "red_0.png"]]
    assert report["leaks"] == [] and report["skipped"] == []
    assert report["imbalance_ratio"] == 1.1
    assert {w["code"] for w in report["warnings"]} == {"duplicate", "too_few_images"}


def test_check_uses_the_split_and_seed_given(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=10, size=40)
    code, out, _ = run_cli(["check", data, "--json", "--split", "0.6,0.2,0.2", "--seed", "4"])
    assert code == 0
    samples = load_dataset(data).samples
    splits = stratified_split([s.label for s in samples], (0.6, 0.2, 0.2), 4)
    expected = sum(1 for s, sp in zip(samples, splits) if s.label == "blue" and sp == "val")
    assert last_json(out)["counts"]["blue"]["val"] == expected


def test_check_prints_a_counts_table_and_the_warnings(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=6, size=40)
    code, out, _ = run_cli(["check", data])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["class", "train", "val", "test", "total"]
    assert lines[0].endswith("tiers per class: 25 to start, 50 good, 150 great")
    assert lines[1].split() == ["blue", "4", "1", "1", "6"]
    assert "data tier: too few to start (smallest class blue, 6 photos; 19 more reach enough to start)" in lines
    assert any(line.startswith("warning: 2 class(es) have fewer images") for line in lines)


def test_check_missing_folder_is_one_line_and_exit_2(tmp_path):
    code, out, err = run_cli(["check", tmp_path / "missing"])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: data source {str(tmp_path / 'missing')!r} does not exist"]


def test_check_bad_split_is_exit_2(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=4, size=40)
    code, _, err = run_cli(["check", data, "--split", "0.5,0.6,0.1"])
    assert code == 2 and "must be three non-negative fractions adding up to 1" in err
