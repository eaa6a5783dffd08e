"""`meca bench --perf` end to end on a tiny folder: the figures are measured and rendered
(their values are machine-dependent, so only their presence and consistency are checked)."""

import json
from pathlib import Path

import pytest

from meca_cli.cli import app
from tests.conftest import make_image_folder


def test_perf_measures_and_renders(runner, tmp_path):
    cifar = tmp_path / "cifar"
    make_image_folder(cifar / "train", classes=3, per_class=10, size=32)
    (cifar / "test").mkdir()
    results = tmp_path / "perf.json"
    args = ["bench", "--perf", "--parts", "path,growth", "--sizes", "6", "--per-class", "8", "--epochs", "1",
            "--data", str(cifar), "--work", str(tmp_path / "work"), "--results", str(results)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    perf = json.loads(results.read_text())
    path = perf["data_path"]
    assert path["samples"] == 24
    for part in ("train", "score"):
        x = path[part]
        assert x["raw_samples_per_s"] > 0 and x["pipeline_samples_per_s"] > 0
        assert abs(x["efficiency"] - x["pipeline_samples_per_s"] / x["raw_samples_per_s"]) < 0.01
    (row,) = perf["growth"]["rows"]
    assert row["samples"] == 18 and row["sanitize_peak_rss_mib"] > 0
    assert set(row["step_seconds"]) == {"train-poisoned", "score", "partition", "enhance", "split", "train-clean",
                                        "relabel"}
    assert abs(row["ratio"] - row["sanitize_seconds"] / row["train_seconds"]) < 0.01
    assert 9 <= row["clean_split"] <= 18  # what the clean model trained on (the split suspects at most half)
    # Resumable: a second call measures nothing new.
    before = results.read_text()
    assert runner.invoke(app, args).exit_code == 0 and results.read_text() == before
    md = tmp_path / "BENCHMARKS.md"
    assert runner.invoke(app, ["bench", "--markdown", str(md), "--results", str(results)]).exit_code == 0
    text = md.read_text()
    assert "## Cost (`meca bench --perf`)" in text and "| 18 |" in text


def test_each_sanitize_is_timed_against_the_trains_either_side_of_it(monkeypatch, tmp_path):
    from meca_cli import perf

    # Train, sanitize, train, ...: a host that slows down shows in the trains around each sanitize.
    timings = iter([100.0, 200.0, 120.0, 250.0, 110.0, 230.0, 130.0])
    steps = [{"step": "score", "seconds": 1.0}]

    def fake_child(args, env=None, parse_json=True):
        return {"seconds": next(timings), "peak_rss_mib": 10.0, "result": {"steps": steps} if "sanitize" in args else {}}

    monkeypatch.setattr(perf, "_run_child", fake_child)
    got = perf.sanitize_vs_train(tmp_path, tmp_path / "run", None, [], repeats=3)
    assert [p["ratio"] for p in got["pairs"]] == [round(200 / 110, 3), round(250 / 115, 3), round(230 / 120, 3)]
    assert got["ratio"] == round(230 / 120, 3) and got["sanitize_seconds"] == 230.0 and got["train_seconds"] == 120.0
    assert got["train_runs_seconds"] == [100.0, 120.0, 110.0, 130.0]
    once = iter([100.0, 210.0])
    monkeypatch.setattr(perf, "_run_child", lambda args, env=None, parse_json=True: {
        "seconds": next(once), "peak_rss_mib": 1.0, "result": {"steps": steps}})
    single = perf.sanitize_vs_train(tmp_path, tmp_path / "run", None, [])
    assert single["ratio"] == 2.1 and "pairs" not in single


def fake_timings(monkeypatch, folder: Path, sanitize_seconds: float, train_seconds: float,
                 sanitize_steps: list[dict]) -> list[list[str]]:
    """Every child command of meca.perf timed at the given seconds (sanitize reporting
    `sanitize_steps`) on a 100-image `folder`; returns the list the commands are logged to."""
    from meca_cli import perf

    calls = []

    def fake_child(args, env=None, parse_json=True):
        calls.append(args)
        sanitize = "sanitize" in args
        return {"seconds": sanitize_seconds if sanitize else train_seconds, "peak_rss_mib": 1.0,
                "result": {"steps": sanitize_steps} if sanitize else {}}

    monkeypatch.setattr(perf, "_run_child", fake_child)
    monkeypatch.setattr(perf, "make_folder", lambda *a, **k: folder)
    monkeypatch.setattr(perf, "count_images", lambda _folder: 100)
    return calls


def test_a_ratio_with_sanitize_options_is_timed_and_kept_apart(monkeypatch, tmp_path):
    from meca_cli import perf, steps
    from meca_cli.benchreport import perf_section

    calls = fake_timings(monkeypatch, tmp_path, 300.0, 150.0, [{"step": "enhance", "seconds": 80.0}])
    results = tmp_path / "perf.json"
    flags = perf.sanitize_flags(["rescore-every=2"])
    table = perf.run_perf(tmp_path, tmp_path / "work", results, steps.Common(device="cpu"), (10,), 1, 10, None,
                          {"ratio"}, ratio_repeats=1, sanitize_options=flags)
    assert "ratio" not in table and table["ratio_with"]["--rescore-every 2"]["ratio"] == 2.0
    assert table["ratio_with"]["--rescore-every 2"]["code"] == perf.code_version()  # the code it timed
    sanitize, = [c for c in calls if "sanitize" in c]
    assert sanitize[-2:] == ["--rescore-every", "2"] and all("--rescore-every" not in c for c in calls if c is not sanitize)
    text = "\n".join(perf_section(table))
    assert "`meca sanitize --rescore-every 2`" in text and "--sanitize-option rescore-every=2" in text
    assert "ratio **2.00**" in text
    from meca_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="NAME=VALUE"):
        perf.sanitize_flags(["rescore-every"])


def test_the_gate_part_times_sanitize_until_score_against_train(monkeypatch, tmp_path):
    from meca_cli import perf, steps
    from meca_cli.benchreport import render_all

    calls = fake_timings(monkeypatch, tmp_path, 40.0, 100.0,
                         [{"step": "train-poisoned", "seconds": 35.0}, {"step": "score", "seconds": 4.0}])
    results = tmp_path / "results" / "perf-gate.json"
    table = perf.run_perf(tmp_path, tmp_path / "work", results, steps.Common(device="cpu"), (10,), 1, 10, None,
                          {"gate"}, ratio_repeats=1)
    assert set(table) == {"meca_perf_version", "machine", "gate"} and table["gate"]["ratio"] == 0.4
    gate, = [c for c in calls if "sanitize" in c]
    assert gate[-2:] == ["--until", "score"]
    (results.parent / "perf.json").write_text(json.dumps({"meca_perf_version": 1, "machine": {"cpu_count": 2}}))
    text = render_all(sorted(results.parent.glob("*.json")))
    assert "**The verdict alone**" in text and "ratio **0.40**" in text
    assert "--parts gate --results benchmarks/results/perf-gate.json" in text and "train-poisoned 35, score 4" in text


def test_a_ratio_measured_again_into_another_file_is_rendered_beside_perf_json(tmp_path):
    from meca_cli.benchreport import render_all

    def ratio_table(ratio, pairs):
        return {"meca_perf_version": 1, "machine": {"cpu_count": 2},
                "ratio": {"samples": 100, "train_seconds": 100.0, "sanitize_seconds": 100.0 * ratio, "ratio": ratio,
                          "step_seconds": {"enhance": 50.0}, "pairs": [{"ratio": p} for p in pairs],
                          "train_runs_seconds": [99.0, 101.0]}}

    (tmp_path / "perf.json").write_text(json.dumps(ratio_table(1.9, [1.8, 1.9, 2.0])))
    again = ratio_table(2.01, [1.87, 2.01, 2.02])
    again["ratio"]["code"] = "abc1234"
    for pair, kept in zip(again["ratio"]["pairs"], (85, 80, 90)):
        pair["clean_split"] = kept  # recorded since; perf.json's older runs have none
    (tmp_path / "perf-again.json").write_text(json.dumps(again))
    text = render_all(sorted(tmp_path.glob("*.json")))
    main, again = text.index("ratio **1.90**"), text.index("ratio **2.01**")
    assert main < again  # perf.json stays the section's own figure, whichever file sorts first
    assert "--results benchmarks/results/perf-again.json`, code at abc1234)" in text and "runs 1.87, 2.01, 2.02" in text
    assert text.count("The split kept") == 1 and "The split kept 85, 80, 90 of the 100 images" in text
