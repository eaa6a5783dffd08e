"""Killing a step mid-way and re-running it gives the same result as never stopping."""

import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.conftest import make_image_folder

# Runs meca with os.replace (the commit point of every atomic write) wrapped: it logs each
# destination, and SIGKILLs the process just before or after the chosen write. Killing at
# write boundaries makes the test independent of machine speed.
_CRASH_AT_WRITE = """
import os, signal, sys
from meca_cli.__main__ import main
log, target, occurrence, when = os.environ.get("MECA_TEST_WRITES_LOG"), os.environ.get("MECA_TEST_KILL_AT"), \\
    int(os.environ.get("MECA_TEST_KILL_OCCURRENCE", "0")), os.environ.get("MECA_TEST_KILL_WHEN", "before")
run = os.environ["MECA_TEST_RUN"]
seen = {}
real_replace = os.replace
def replace(src, dst):
    rel = os.path.relpath(dst, run)
    seen[rel] = seen.get(rel, 0) + 1
    hit = rel == target and seen[rel] == occurrence
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    if log:
        with open(log, "a") as fh:
            fh.write(rel + "\\n")
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.argv[0] = "meca"
main()
"""


ARGS = ["--epochs", "6", "--image-size", "16", "--batch-size", "8", "--device", "cpu"]


def _meca(*args, env):
    return [sys.executable, "-m", "meca_cli", *args]


# "enhance-every-2": killed after round 2, it resumes at round 3, which reuses round 2's scores.
@pytest.mark.parametrize("step", ["train", "enhance", "enhance-every-2"])
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
                                "--rounds", "4", "--image-size", "16", "--batch-size", "8", "--device", "cpu",
                                *(["--rescore-every", "2"] if step == "enhance-every-2" else []), env=env)
        state_name = "enhance_state.safetensors"
    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    crashed = subprocess.run(_crash_at_write(cmd(killed)), capture_output=True,
                             env={**env, "MECA_TEST_RUN": str(killed), "MECA_TEST_KILL_AT": state_name,
                                  "MECA_TEST_KILL_OCCURRENCE": "2", "MECA_TEST_KILL_WHEN": "after"})
    assert crashed.returncode == -signal.SIGKILL, "the step finished before its second saved state"
    assert not (killed / "manifest.json").exists()  # never marked complete over partial outputs
    subprocess.run(cmd(killed), env=env, check=True, capture_output=True)
    assert (killed / "manifest.json").exists()
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def _crash_at_write(command: list[str]) -> list[str]:
    """The same meca command, run under the _CRASH_AT_WRITE wrapper."""
    assert command[:3] == [sys.executable, "-m", "meca_cli"]
    return [sys.executable, "-c", _CRASH_AT_WRITE, *command[3:]]


def test_sigint_stops_cleanly_with_130_and_resumes(tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "t"
    args = ["train", str(data), "-o", str(out), "--epochs", "40", "--image-size", "16", "--batch-size", "8",
            "--device", "cpu"]
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # an ignored SIGINT ignored: restore the default so the test holds however it is launched.
    proc = subprocess.Popen(_meca(*args, env=env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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


def test_sanitize_killed_inside_every_step_ends_identical(tmp_path):
    """SIGKILL inside every step of sanitize, just before or after a seeded random one of its
    writes; each re-run resumes, and the finished run's artifacts are bitwise those of an
    uninterrupted run."""
    import random

    from meca_cli.pipeline import STEPS

    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    args = ["--epochs", "4", "--rounds", "3", "--finetune-epochs", "2", "--image-size", "16", "--batch-size", "4",
            "--device", "cpu"]

    def sanitize(run, **kill):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MECA_TEST_RUN": str(run), **kill}
        return subprocess.run(_crash_at_write(_meca("sanitize", str(data), "--out", str(run), *args, env=env)),
                              env=env, capture_output=True, text=True)

    whole = tmp_path / "whole"
    log = tmp_path / "writes.log"
    done = sanitize(whole, MECA_TEST_WRITES_LOG=str(log))
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _completed_steps_are_intact(whole)
    writes = log.read_text().splitlines()

    run = tmp_path / "killed"
    rng = random.Random(1234)
    for step in STEPS:
        in_step = [(rel, writes[: i + 1].count(rel)) for i, rel in enumerate(writes) if rel.startswith(step + os.sep)]
        assert in_step, f"step {step} wrote nothing"
        target, occurrence = rng.choice(in_step)
        when = rng.choice(["before", "after"])
        killed = sanitize(run, MECA_TEST_KILL_AT=target, MECA_TEST_KILL_OCCURRENCE=str(occurrence),
                          MECA_TEST_KILL_WHEN=when)
        assert killed.returncode == -signal.SIGKILL, f"{step}: no kill at {when} {target} #{occurrence}"
        _completed_steps_are_intact(run)  # never a step marked complete over partial outputs
    resumed = sanitize(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _completed_steps_are_intact(run) == expected
    assert (run / "verdicts.csv").read_bytes() == (whole / "verdicts.csv").read_bytes()
