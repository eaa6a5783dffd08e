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
