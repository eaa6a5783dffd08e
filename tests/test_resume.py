"""Killing a step mid-way and re-running it gives the same result as never stopping."""

import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.conftest import make_image_folder

ARGS = ["--epochs", "6", "--image-size", "16", "--batch-size", "8", "--device", "cpu"]


def _meca(*args, env):
    return [sys.executable, "-m", "meca_cli", *args]


@pytest.mark.parametrize("step", ["train", "enhance"])
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, step):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=16, poison=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = tmp_path / "base"
    subprocess.run(_meca("train", str(data), "-o", str(base), *ARGS, env=env), env=env, check=True,
                   capture_output=True)
    ckpt = base / "model.safetensors"
    if step == "train":
        cmd = lambda out: _meca("train", str(data), "-o", str(out), *ARGS, env=env)  # noqa: E731
        state_name = "train_state.safetensors"
    else:
        seed = tmp_path / "seed.idx"
        seed.write_text("0\n1\n2\n20\n21\n40\n")
        cmd = lambda out: _meca("enhance", str(data), "-m", str(ckpt), "--clean-seed", str(seed), "-o", str(out),  # noqa: E731
                                "--rounds", "4", "--image-size", "16", "--batch-size", "8", "--device", "cpu", env=env)
        state_name = "enhance_state.safetensors"
    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / state_name).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / state_name).exists(), "the step finished before it could be interrupted"
    assert not (killed / "manifest.json").exists()  # never marked complete over partial outputs
    subprocess.run(cmd(killed), env=env, check=True, capture_output=True)
    assert (killed / "manifest.json").exists()
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def test_sigint_stops_cleanly_with_130_and_resumes(tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "t"
    args = ["train", str(data), "-o", str(out), "--epochs", "40", "--image-size", "16", "--batch-size", "8",
            "--device", "cpu"]
    proc = subprocess.Popen(_meca(*args, env=env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "train_state.safetensors").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and stdout == ""
    assert (out / "train_state.safetensors").exists() and not (out / "manifest.json").exists()
    done = subprocess.run(_meca(*args, env=env), env=env, capture_output=True, text=True)
    assert done.returncode == 0 and (out / "manifest.json").exists()
