"""`meca bench --perf` end to end on a tiny folder: the figures are measured and rendered
(their values are machine-dependent, so only their presence and consistency are checked)."""

import json

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
