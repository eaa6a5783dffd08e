"""`meca bench` end to end on a tiny stand-in for CIFAR-10: a run, its peer defences, and
the BENCHMARKS.md rendered from their JSON."""

import json

from meca_cli.cli import app
from meca_cli.config import EnhanceConfig
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
    measured = {k: run[k]["target_accuracy"] for k in ("no_defence", "meca_clean_model", "meca_final_model")}

    # A result that predates the target-class accuracy gains it from the saved models.
    old = json.loads(results.read_text())
    for k in measured:
        del old["runs"][0][k]["target_accuracy"]
    results.write_text(json.dumps(old))
    r = runner.invoke(app, ["bench", *common])
    assert r.exit_code == 0, r.stderr
    (run,) = json.loads(results.read_text())["runs"]
    assert {k: run[k]["target_accuracy"] for k in measured} == measured

    # A run made with other defaults is measured again from a late step only: the earlier
    # steps and the no-defence model are reused, not retrained.
    work_run = tmp_path / "work" / "cifar10-small[epochs=2,per_class=12,min_steps=0]" / "badnet-s0"
    kept = [work_run / "no-defence" / "model.safetensors", work_run / "run" / "train-clean" / "model.safetensors"]
    mtimes = [p.stat().st_mtime_ns for p in kept]
    old = json.loads(results.read_text())
    old["runs"][0]["config"] = {"made": "with older defaults"}
    results.write_text(json.dumps(old))
    r = runner.invoke(app, ["bench", *common, "--from", "relabel"])
    assert r.exit_code == 0, r.stderr
    (again,) = json.loads(results.read_text())["runs"]
    assert again["measured_from"] == "relabel" and again["earlier_steps_config"] == {"made": "with older defaults"}
    assert again["config"] == run["config"] and again["no_defence"] == run["no_defence"]
    assert [p.stat().st_mtime_ns for p in kept] == mtimes
    r = runner.invoke(app, ["bench", *common, "--from", "relabel"])  # now current: nothing to do
    assert r.exit_code == 0 and "measuring again" not in r.stderr and "already" in r.stderr

    r = runner.invoke(app, ["bench", *common, "--defences", "all"])
    assert r.exit_code == 0, r.stderr
    (peer,) = json.loads(results.with_name("cifar10-small-defences.json").read_text())["runs"]
    assert set(peer["defences"]) == set(DEFENCES)
    assert peer["no_defence"] == again["no_defence"]  # the model the peers repaired
    for name, got in peer["defences"].items():
        assert 0 <= got["accuracy"] <= 1 and 0 <= got["asr"] <= 1 and got["seconds"] > 0, name
    abl = peer["defences"]["abl"]
    assert abl["isolated"] == 1 and abl["flagged"] == 1 and 0 <= abl["recall"] <= 1  # 1 % of 36 images, rounded up
    assert peer["defences"]["cutmix"]["clean_samples"] == 3  # 5 % of 12 per class, at least 1 per class
    assert peer["defences"]["dbr"]["flagged"] == 2  # 5 % of 36
    assert 0 <= peer["defences"]["scanft"]["fpr"] <= 1 and peer["defences"]["scanft"]["top_class"] in (0, 1, 2)

    # Another poison rate is stored apart, poisons that share of the folder, and gets its own table.
    r = runner.invoke(app, ["bench", *common, "--rate", "0.25", "--no-baseline"])
    assert r.exit_code == 0, r.stderr
    other = [r for r in json.loads(results.read_text())["runs"] if r["protocol"] != run["protocol"]]
    assert [(o["protocol"], o["rate"]) for o in other] == [("cifar10-small[epochs=2,per_class=12,min_steps=0,rate=0.25]",
                                                            0.25)]
    truth = (tmp_path / "work" / other[0]["protocol"] / "badnet-s0" / "data" / "train" / "ground_truth.csv").read_text()
    assert truth.count(",poison") == 9  # 25 % of 36
    assert "25 % poison" in other[0]["protocol_note"]

    # The trigger floor: the attack's triggered test set on the clean control's no-defence
    # model, trained on the same images with no poison, in the same work folders.
    floor_args = [*common[:common.index("--results")], "--floor"]
    floors = results.with_name("cifar10-small[epochs=2,per_class=12,min_steps=0]-floor.json")
    r = runner.invoke(app, ["bench", *floor_args, "--results", str(results)])
    assert r.exit_code == 2 and "not a trigger-floor results file" in r.stderr
    r = runner.invoke(app, ["bench", *floor_args])
    assert r.exit_code == 0, r.stderr
    (floor,) = json.loads(floors.read_text())["runs"]
    assert (floor["protocol"], floor["attack"], floor["seed"]) == (run["protocol"], "badnet", 0)
    assert 0 <= floor["floor"]["asr"] <= 1 and floor["train"] == {"arch": run["config"]["arch"], **run["config"]["train"]}
    control = tmp_path / "work" / run["protocol"] / "clean-s0"
    assert (control / "no-defence" / "model.safetensors").is_file()
    assert ",poison" not in (control / "data" / "train" / "ground_truth.csv").read_text()
    r = runner.invoke(app, ["bench", *floor_args])
    assert r.exit_code == 0 and "measured already" in r.stderr
    # Another rate's floor: its own triggered test set, the protocol's one clean control.
    r = runner.invoke(app, ["bench", *floor_args, "--rate", "0.25"])
    assert r.exit_code == 0, r.stderr
    (rate_floor,) = json.loads(floors.with_name(f"{other[0]['protocol']}-floor.json").read_text())["runs"]
    assert rate_floor["protocol"] == other[0]["protocol"] and 0 <= rate_floor["floor"]["asr"] <= 1
    assert not (tmp_path / "work" / other[0]["protocol"] / "clean-s0").exists()

    md = tmp_path / "BENCHMARKS.md"
    r = runner.invoke(app, ["bench", "--markdown", str(md)])  # every JSON in benchmarks/results
    assert r.exit_code == 0, r.stderr
    text = md.read_text()
    assert "--epochs 2 --per-class 12 --min-steps 0" in text  # the reduced protocol's reproduce command
    assert "abl ACC | abl ASR" in text and "cutmix ACC" in text and "| badnet | 0 |" in text
    assert "Detection by the defences that isolate samples" in text
    assert "### Other poison rates (cifar10-small[epochs=2,per_class=12,min_steps=0])" in text
    assert "--min-steps 0 --rate 0.25 --attacks badnet --seeds 0" in text and "| badnet | 25 % | 0 |" in text
    assert "measured again from the `relabel` step" in text and "--seeds 0 --epochs 2 --per-class 12 --min-steps 0 --from relabel" in text


def test_ablation_sweeps_one_parameter_and_reuses_the_default(runner, tmp_path, monkeypatch):
    cifar = tmp_path / "cifar"
    make_image_folder(cifar / "train", classes=3, per_class=12, size=32)
    make_image_folder(cifar / "test", classes=3, per_class=3, size=32, seed=1)
    monkeypatch.chdir(tmp_path)
    default = EnhanceConfig().rounds
    args = ["bench", "--protocol", "cifar10-small", "--per-class", "10", "--epochs", "2", "--min-steps", "0",
            "--attacks", "badnet", "--seeds", "0", "--data", str(cifar), "--work", str(tmp_path / "work"),
            "--ablate", f"enhance.rounds=2,{default}", "--ablate", "split.rule=agreement,confidence"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    results = tmp_path / "benchmarks/results/cifar10-small[epochs=2,per_class=10,min_steps=0]-ablation.json"
    table = json.loads(results.read_text())
    assert table["protocol"] == "cifar10-small[epochs=2,per_class=10,min_steps=0]"
    rows = {(row["param"], row["value"]): row for row in table["runs"]}
    assert set(rows) == {("enhance.rounds", 2), ("enhance.rounds", default), ("split.rule", "agreement"),
                         ("split.rule", "confidence")}
    assert [k for k, row in rows.items() if row["default"]] == [("enhance.rounds", default), ("split.rule", "agreement")]
    assert rows[("enhance.rounds", 2)]["config"]["enhance"]["rounds"] == 2
    assert rows[("split.rule", "confidence")]["config"]["split"]["rule"] == "confidence"
    # The two default rows are one configuration: measured once, the same figures.
    a, b = rows[("enhance.rounds", default)], rows[("split.rule", "agreement")]
    assert a["config_fingerprint"] == b["config_fingerprint"] and a["detection"] == b["detection"]
    assert a["config_fingerprint"] != rows[("enhance.rounds", 2)]["config_fingerprint"]
    # Resumable: nothing new to measure.
    before = results.read_text()
    assert runner.invoke(app, args).exit_code == 0
    assert results.read_text() == before
    md = tmp_path / "BENCHMARKS.md"
    assert runner.invoke(app, ["bench", "--markdown", str(md)]).exit_code == 0
    text = md.read_text()
    assert "## Ablation (cifar10-small[epochs=2,per_class=10,min_steps=0])" in text
    assert f"--ablate enhance.rounds=2,{default}" in text and f"| {default} * |" in text


def test_ablation_refuses_an_unknown_parameter(runner, tmp_path):
    r = runner.invoke(app, ["bench", "--ablate", "enhance.nope=1,2", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "unknown parameter 'enhance.nope'" in r.stderr


def test_ablation_refuses_a_value_the_parameter_does_not_take(runner, tmp_path):
    r = runner.invoke(app, ["bench", "--ablate", "enhance.last_round_by=kl,confidnce", "--data", str(tmp_path)])
    assert r.exit_code == 2
    assert "--ablate enhance.last_round_by: last_round_by must be one of kl, confidence, got 'confidnce'" in r.stderr
