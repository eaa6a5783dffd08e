"""The README's first command: `meca demo` on scikit-learn's bundled digits, shortened."""

import json

import pytest

from meca_cli.cli import app


def test_digits_folder_is_real_data():
    pytest.importorskip("sklearn")
    from meca_cli.datasets import digits_tensors, split_train_test

    images, labels, classes = digits_tensors()
    assert images.shape == (1797, 3, 32, 32) and images.dtype.is_floating_point is False
    assert classes == [f"digit{d}" for d in range(10)] and int(labels.max()) == 9
    train, test = split_train_test(labels, 0.25, seed=0)
    assert len(set(train.tolist()) & set(test.tolist())) == 0 and len(train) + len(test) == 1797


def test_demo_runs_end_to_end(runner, tmp_path):
    pytest.importorskip("sklearn")
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "2", "--per-class", "30",
                                "--format", "json"])
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["detection"]["poison"] == int(0.05 * result["train_samples"])
    for key in ("accuracy", "asr"):
        assert 0.0 <= result["meca_final_model"][key] <= 1.0
    assert (tmp_path / "demo" / "run" / "report.html").is_file()
