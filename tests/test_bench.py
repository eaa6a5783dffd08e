"""`meca bench` end to end on a tiny stand-in for CIFAR-10: a run, its peer defences, and
the BENCHMARKS.md rendered from their JSON."""

import json

from meca_cli.cli import app
from meca_cli.defences import DEFENCES
from tests.conftest import make_image_folder


def test_bench_then_every_peer_defence_then_markdown(runner, tmp_path, monkeypatch):
    cifar = tmp_path / "cifar"
    make_image_folder(cifar / "train", classes=3, per_class=16, size=32)
    make_image_folder(cifar / "test", classes=3, per_class=4, size=32, seed=1)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "benchmarks" / "results" / "cifar10-small.json"
    common = ["--protocol", "cifar10-small", "--per-class", "12", "--epochs", "2", "--min-steps", "0",
              "--attacks", "badnet",
              "--seeds", "0", "--data", str(cifar), "--work", str(tmp_path / "work"), "--results", str(results)]
    r = runner.invoke(app, ["bench", *common])
    assert r.exit_code == 0, r.stderr
    (run,) = json.loads(results.read_text())["runs"]
    assert run["attack"] == "badnet" and 0 <= run["no_defence"]["asr"] <= 1

    r = runner.invoke(app, ["bench", *common, "--defences", "all"])
    assert r.exit_code == 0, r.stderr
    (peer,) = json.loads(results.with_name("cifar10-small-defences.json").read_text())["runs"]
    assert set(peer["defences"]) == set(DEFENCES)
    for name, got in peer["defences"].items():
        assert 0 <= got["accuracy"] <= 1 and 0 <= got["asr"] <= 1 and got["seconds"] > 0, name
    abl = peer["defences"]["abl"]
    assert abl["isolated"] == 1 and abl["flagged"] == 1 and 0 <= abl["recall"] <= 1  # 1 % of 36 images, rounded up
    assert peer["defences"]["cutmix"]["clean_samples"] == 3  # 5 % of 12 per class, at least 1 per class
    assert peer["defences"]["dbr"]["flagged"] == 2  # 5 % of 36
    assert 0 <= peer["defences"]["scanft"]["fpr"] <= 1 and peer["defences"]["scanft"]["top_class"] in (0, 1, 2)

    md = tmp_path / "BENCHMARKS.md"
    r = runner.invoke(app, ["bench", "--markdown", str(md)])  # every JSON in benchmarks/results
    assert r.exit_code == 0, r.stderr
    text = md.read_text()
    assert "--epochs 2 --per-class 12 --min-steps 0" in text  # the reduced protocol's reproduce command
    assert "abl ACC | abl ASR" in text and "cutmix ACC" in text and "| badnet | 0 |" in text
    assert "Detection by the defences that isolate samples" in text
