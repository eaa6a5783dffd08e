"""A run on real images: a small subset of the shared CIFAR-10 JPEG folder."""

import json
import tarfile

import pytest

from meca_cli.cli import app
from tests.conftest import CIFAR_TARBALL, snapshot

PER_CLASS = 20
CLASSES = ("airplane", "automobile", "cat")


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory):
    if not CIFAR_TARBALL.is_file():
        pytest.skip(f"real-data test skipped: {CIFAR_TARBALL} is absent (it lives in ../shared beside the repo)")
    root = tmp_path_factory.mktemp("cifar")
    taken = {c: 0 for c in CLASSES}
    with tarfile.open(CIFAR_TARBALL) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) == 4 and parts[1] == "train" and parts[2] in taken and taken[parts[2]] < PER_CLASS:
                data = tar.extractfile(member).read()
                target = root / "train" / parts[2] / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                taken[parts[2]] += 1
            if all(v == PER_CLASS for v in taken.values()):
                break
    return root / "train"


def test_sanitize_on_real_cifar_images(runner, cifar_subset, tmp_path):
    before = snapshot(cifar_subset)
    poisoned = tmp_path / "poisoned"
    r = runner.invoke(app, ["poison", str(cifar_subset), str(poisoned), "--attack", "badnet", "--rate", "0.1",
                            "--target", "1", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)["summary"]
    assert summary["poison"] == 6 and summary["samples"] == 60
    run = tmp_path / "run"
    r = runner.invoke(app, ["sanitize", str(poisoned), "--out", str(run), "--epochs", "3", "--rounds", "2",
                            "--finetune-epochs", "1", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)["report"]
    assert report["classes"] == list(CLASSES) and report["samples"] == 60
    r = runner.invoke(app, ["evaluate", "--verdicts", str(run / "verdicts.csv"), "--ground-truth",
                            str(poisoned / "ground_truth.csv")])
    assert r.exit_code == 0, r.stderr
    detection = json.loads(r.stdout)["detection"]
    assert detection["poison"] == 6 and 0.0 <= detection["auroc"] <= 1.0
    assert snapshot(cifar_subset) == before
