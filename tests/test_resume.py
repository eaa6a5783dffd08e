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


def _completed_steps_are_intact(run) -> dict[str, dict[str, str]]:
    """Every step marked complete has exactly the outputs its manifest lists; returns their hashes."""
    import json

    from meca_cli.store.artifacts import sha256_file

    hashes = {}
    for manifest_path in sorted(run.glob("*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        outputs = {o["path"]: o["sha256"] for o in manifest["outputs"]}
        for name, digest in outputs.items():
            assert sha256_file(manifest_path.parent / name) == digest, f"{manifest_path.parent.name}/{name}"
        hashes[manifest_path.parent.name] = outputs
    return hashes


def test_sanitize_killed_at_random_moments_ends_identical(tmp_path):
    """SIGKILL inside every step, at a seeded random moment after it starts; each re-run
    resumes, and the finished run's artifacts are bitwise those of an uninterrupted run."""
    import random

    from meca_cli.pipeline import STEPS

    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--epochs", "4", "--rounds", "3", "--finetune-epochs", "2", "--image-size", "16", "--batch-size", "4",
            "--device", "cpu"]
    subprocess.run(_meca("sanitize", str(data), "--out", str(tmp_path / "whole"), *args, env=env), env=env,
                   check=True, capture_output=True)
    expected = _completed_steps_are_intact(tmp_path / "whole")

    run = tmp_path / "killed"
    rng = random.Random(1234)
    killed_in = []
    for step in STEPS:
        proc = subprocess.Popen(_meca("sanitize", str(data), "--out", str(run), *args, env=env), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (run / step).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # The step actually interrupted: the first one not marked complete (a fast step
            # may already be done when the kill lands, and the kill hits a later one).
            killed_in.append(next(s for s in STEPS if not (run / s / "manifest.json").exists()))
        proc.wait()
        _completed_steps_are_intact(run)  # never a step marked complete over partial outputs
    subprocess.run(_meca("sanitize", str(data), "--out", str(run), *args, env=env), env=env, check=True,
                   capture_output=True)
    assert len(set(killed_in)) >= 4, f"interrupted too few distinct steps to mean anything: {killed_in}"
    assert _completed_steps_are_intact(run) == expected
    assert (run / "verdicts.csv").read_bytes() == (tmp_path / "whole" / "verdicts.csv").read_bytes()
