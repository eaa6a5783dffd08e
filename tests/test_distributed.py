"""torchrun with 2 CPU processes (gloo): scoring shards by rank and merges to the same table."""

import os
import subprocess

import torch

from meca_cli.cli import app
from meca_cli.core.dist import launcher as dist_launcher
from meca_cli.steps import read_scores
from tests.conftest import make_image_folder


def test_two_process_scoring_equals_single_process(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=9)
    common = ["--image-size", "16", "--batch-size", "8", "--device", "cpu"]
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "1", *common]).exit_code == 0
    model = str(tmp_path / "t" / "model.safetensors")
    assert runner.invoke(app, ["score", str(data), "-m", model, "-o", str(tmp_path / "one"), *common]).exit_code == 0
    launcher = dist_launcher()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", "-m", "meca_cli", "score", str(data),
                           "-m", model, "-o", str(tmp_path / "two"), *common], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = read_scores(tmp_path / "one" / "scores.csv")
    b = read_scores(tmp_path / "two" / "scores.csv")
    assert len(b["kl"]) == 27  # every sample once: none lost, none duplicated
    assert torch.allclose(a["kl"], b["kl"], rtol=1e-4, atol=1e-7) and torch.equal(a["pred"], b["pred"])


def test_two_process_training_runs(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = dist_launcher()
    proc = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", "-m", "meca_cli", "train", str(data),
                           "-o", str(tmp_path / "t"), "--epochs", "2", "--image-size", "16", "--batch-size", "4",
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "t" / "manifest.json").is_file() and (tmp_path / "t" / "model.safetensors").is_file()
    assert not (tmp_path / "t" / "train_state.safetensors").exists()


def test_two_process_enhancement_completes_with_sharded_rescoring(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=8, poison=3)
    common = ["--image-size", "16", "--batch-size", "4", "--device", "cpu"]
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "1", *common]).exit_code == 0
    seed = tmp_path / "seed.idx"
    seed.write_text("0\n8\n16\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = dist_launcher()
    proc = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", "-m", "meca_cli", "enhance", str(data),
                           "-m", str(tmp_path / "t" / "model.safetensors"), "--clean-seed", str(seed),
                           "-o", str(tmp_path / "e"), "--rounds", "2", *common], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "e"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.safetensors", "rounds", "rounds.csv"]
    assert len((out / "rounds.csv").read_text().splitlines()) == 3
    # Round 2's re-scoring joined both shards: every sample once, written by rank 0 only.
    rescored = [line.split(",")[0] for line in (out / "rounds" / "round2_scores.csv").read_text().splitlines()[1:]]
    assert rescored == [str(i) for i in range(3 * 8 + 3)]  # 8 per class and 3 poisoned
