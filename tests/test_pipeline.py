"""End to end on a tiny synthetic folder: every artifact, resumability, JSON contract, gate."""

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from meca_cli.config import RelabelConfig
from meca_cli.cli import app
from meca_cli.pipeline import STEPS
from tests.conftest import make_image_folder, snapshot

FAST = ["--epochs", "3", "--rounds", "2", "--finetune-epochs", "1", "--image-size", "16", "--batch-size", "16"]
UNIFORM = ["--unlearn", "uniform", "--split-rule", "confidence", "--min-confidence", "0.4"]


def test_sanitize_end_to_end(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=20, poison=6)
    before = snapshot(data)
    run = tmp_path / "run"
    result = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--format", "json", *FAST])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)  # stdout holds only the JSON result
    assert payload["meca_result_version"] == "1"
    report = payload["report"]
    assert report["samples"] == 66
    for name in STEPS:
        assert (run / name / "manifest.json").is_file(), name
    for rel in ["score/scores.csv", "partition/clean_seed.idx", "partition/rest.idx", "enhance/model.safetensors",
                "enhance/rounds.csv", "split/clean.idx", "split/suspected.idx", "split/split.csv",
                "train-clean/model.safetensors", "relabel/relabeled.csv", "relabel/model.safetensors",
                "verdicts.csv", "report.json"]:
        assert (run / rel).is_file(), rel
    lines = (run / "verdicts.csv").read_text().splitlines()
    assert lines[0] == "index,path,label,kl,enhanced_pred,verdict,new_label"
    assert len(lines) == 67
    clean = set(map(int, (run / "split/clean.idx").read_text().split()))
    suspected = set(map(int, (run / "split/suspected.idx").read_text().split()))
    assert clean.isdisjoint(suspected) and clean | suspected == set(range(66))
    assert snapshot(data) == before  # the input folder is never written to
    # Every round logs its agreement; the last round's is the enhanced model's, as split sees it.
    rounds = list(csv.DictReader((run / "enhance/rounds.csv").open()))
    assert [int(r["round"]) for r in rounds] == [1, 2]
    assert all(0.0 <= float(r["agreement"]) <= 1.0 for r in rounds)
    split_rows = list(csv.DictReader((run / "split/split.csv").open()))
    split_agreement = sum(r["label"] == r["enhanced_pred"] for r in split_rows) / len(split_rows)
    assert float(rounds[-1]["agreement"]) == pytest.approx(split_agreement)
    # Round 2 unlearned the highest-scored samples of its own re-scoring, as many as rounds.csv says.
    round2 = list(csv.DictReader((run / "enhance/rounds/round2_scores.csv").open()))
    unlearned = set(map(int, (run / "enhance/rounds/round2_clean.idx").read_text().split()))
    assert len(round2) == 66 and len(unlearned) == int(rounds[1]["clean_set"])
    kl = {int(r["index"]): float(r["kl"]) for r in round2}
    assert min(kl[i] for i in unlearned) >= max(kl[i] for i in set(kl) - unlearned)
    # The report names every class the split flagged (almost) whole.
    by_class: dict = {}
    for r in split_rows:
        by_class.setdefault(r["path"].split("/")[0], []).append(r["verdict"] == "suspected")
    share = RelabelConfig.lost_class_share
    expected = {c: sum(v) / len(v) for c, v in by_class.items() if sum(v) / len(v) >= share}
    assert report["mostly_suspected_classes"] == pytest.approx(expected)

    # A second run is a no-op: every step up to date, outputs untouched.
    mtimes = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--format", "json", *FAST])
    assert again.exit_code == 0
    assert all(s["skipped"] for s in json.loads(again.stdout)["steps"])
    assert "up to date" in again.stderr
    # Step outputs are untouched; only the run-level summaries (report, verdicts) are rewritten.
    summaries = {"report.json", "verdicts.csv", "report.html"}
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items()
               if p.name not in summaries and p.parent.name != "report")

    # Changing a parameter of one step recomputes it and everything downstream only.
    changed = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--format", "json", *FAST,
                                  "--rho-max", "0.6"])
    assert changed.exit_code == 0
    skipped = {s["step"]: s["skipped"] for s in json.loads(changed.stdout)["steps"]}
    assert skipped["train-poisoned"] and skipped["score"] and skipped["partition"]
    assert not skipped["enhance"] and not skipped["split"]


def test_until_and_from(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    run = tmp_path / "run"
    first = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--until", "partition", *FAST])
    assert first.exit_code == 0, first.stderr
    assert (run / "partition" / "manifest.json").is_file()
    assert not (run / "enhance").exists()
    # --from a step whose predecessors are missing is refused.
    bad = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "other"), "--from", "enhance", *FAST])
    assert bad.exit_code == 2 and "has not completed" in bad.stderr
    # --from recomputes that step even though it is up to date.
    redo = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--from", "partition", "--until",
                               "partition", "--format", "json", *FAST])
    assert redo.exit_code == 0
    assert [s["skipped"] for s in json.loads(redo.stdout)["steps"]] == [False]


def test_the_split_and_relabel_reuse_the_enhanced_models_predictions_unchanged(runner, tmp_path):
    from meca_cli import steps
    from meca_cli.store.artifacts import read_csv, sha256_file

    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    run = tmp_path / "run"
    assert runner.invoke(app, ["sanitize", str(data), "--out", str(run), *FAST]).exit_code == 0
    enhanced = run / "enhance" / "model.safetensors"
    (kept,) = steps._predicted  # the enhanced model's logits, kept from the enhance step to relabel
    assert kept[0] == sha256_file(enhanced)
    # The same steps in a process that never ran the enhancement: each passes over the data itself.
    steps._predicted.clear()
    r = runner.invoke(app, ["split", str(data), "-m", str(enhanced), "--scores", str(run / "score" / "scores.csv"),
                            "--out", str(tmp_path / "split"), "--image-size", "16"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "split" / "split.csv").read_bytes() == (run / "split" / "split.csv").read_bytes()
    steps._predicted.clear()
    r = runner.invoke(app, ["relabel", str(data), "-m", str(run / "train-clean" / "model.safetensors"),
                            "--suspected", str(run / "split" / "suspected.idx"), "--enhanced-model", str(enhanced),
                            "--out", str(tmp_path / "relabel"), "--finetune-epochs", "1", "--image-size", "16",
                            "--batch-size", "16"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "relabel" / "relabeled.csv").read_bytes() == (run / "relabel" / "relabeled.csv").read_bytes()
    rounds = read_csv(run / "enhance" / "rounds.csv", ("round", "agreement"))
    split = json.loads((run / "split" / "manifest.json").read_text())["summary"]
    assert float(rounds[-1]["agreement"]) == pytest.approx(split["agreement"])  # one pass, on the saved model


def test_the_poisoned_model_trains_at_least_its_own_step_floor(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)  # 36 images, batch 16: 3 steps an epoch
    for min_steps, poisoned_min_steps, epochs in ((30, 12, 4), (9, 12, 3)):  # the floor is capped at --min-steps
        run = tmp_path / f"run-{min_steps}"
        args = ["sanitize", str(data), "--out", str(run), "--until", "train-poisoned", *FAST, "--epochs", "6",
                "--min-steps", str(min_steps), "--poisoned-min-steps", str(poisoned_min_steps)]
        assert runner.invoke(app, args).exit_code == 0
        assert json.loads((run / "train-poisoned/manifest.json").read_text())["summary"]["epochs"] == epochs


def test_the_clean_model_trains_its_fraction_of_the_epochs(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    run = tmp_path / "run"
    args = ["sanitize", str(data), "--out", str(run), "--until", "train-clean", *FAST, "--epochs", "5",
            "--min-steps", "0", "--clean-epochs", "0.6"]
    assert runner.invoke(app, args).exit_code == 0
    assert json.loads((run / "train-clean/manifest.json").read_text())["summary"]["epochs"] == 3
    assert json.loads((run / "train-poisoned/manifest.json").read_text())["summary"]["epochs"] == 2  # 1/3 of 5


def test_sanitize_passes_its_relabel_options_and_the_fine_tune_trains_its_share(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    run = tmp_path / "run"
    args = ["sanitize", str(data), "--out", str(run), *FAST, "--epochs", "1", "--min-steps", "0",
            "--lost-class-margin", "0.9", "--finetune-clean-share", "0.5", "--relabel-confidence", "1"]
    assert runner.invoke(app, args).exit_code == 0
    manifest = json.loads((run / "relabel/manifest.json").read_text())
    assert manifest["params"]["lost_class_margin"] == 0.9
    assert manifest["params"]["finetune_clean_share"] == 0.5
    assert manifest["params"]["relabel_confidence"] == 1.0
    # The fine-tune trains every suspect not left out and half of the clean split.
    rows = list(csv.DictReader((run / "relabel/relabeled.csv").open()))
    suspects = set(map(int, (run / "split/suspected.idx").read_text().split()))
    trained = [r for r in rows if r["new_label"] != "-1"]
    clean = sum(int(r["index"]) not in suspects for r in trained)
    assert manifest["summary"]["finetune"]["samples"] == len(trained) - clean + round(0.5 * clean)


def test_steps_chain_by_hand_and_through_stdin(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    common = ["--image-size", "16", "--batch-size", "16"]
    r = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "1", *common])
    assert r.exit_code == 0, r.stderr
    model = tmp_path / "t" / "model.safetensors"
    r = runner.invoke(app, ["score", str(data), "-m", str(model), "-o", str(tmp_path / "s"), "--format", "csv",
                            *common])
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == "index,path,label,kl,pred,loss,conf"
    r = runner.invoke(app, ["partition", str(tmp_path / "s" / "scores.csv"), "-o", str(tmp_path / "p"),
                            "--format", "csv"])
    assert r.exit_code == 0
    seed = r.stdout  # the seed clean list, as a pipeline would pass it on
    r = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t2"), "--epochs", "1", "--indices", "-",
                            "--format", "json", *common], input=seed)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["samples"] == len(seed.split())


def test_gate_exit_codes(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    run = tmp_path / "run"
    base = ["sanitize", str(data), "--out", str(run), *FAST]
    ok = runner.invoke(app, base)
    assert ok.exit_code == 0
    # Robust-crowding thresholds of 0 make every folder "poisoned": the gate trips (exit 1)
    # only with --fail-over, and only over the estimated poison fraction.
    # (--max-fit 1: judged however well the step-1 model fits this tiny folder).
    always = ["--robust-ratio", "0", "--robust-min-z", "0", "--max-fit", "1"]
    tripped = runner.invoke(app, [*base, *always, "--fail-over", "0"])
    v = json.loads((run / "report.json").read_text())["dataset_verdict"]
    assert v["verdict"] == "poisoned" and v["reason"] == "robust"
    assert tripped.exit_code == (1 if v["estimated_poison_fraction"] > 0 else 0)
    no_gate = runner.invoke(app, [*base, *always])
    assert no_gate.exit_code == 0
    # Where the step-1 model fits more of the labels than --max-fit, nothing is judged: the
    # gate does not trip, and says why.
    unjudged = runner.invoke(app, [*base, "--robust-ratio", "0", "--robust-min-z", "0", "--max-fit", "0",
                                   "--fail-over", "0"])
    v = json.loads((run / "report.json").read_text())["dataset_verdict"]
    assert (v["verdict"], v["reason"], v["suspected_class"], v["estimated_poison_fraction"]) == ("undetermined", "fit",
                                                                                                 None, 0.0)
    assert unjudged.exit_code == 0 and "gate: not judged" in unjudged.stderr and v["fit"] > 0


def test_the_verdict_alone_gates_a_run_stopped_after_the_score_step(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12)
    run = tmp_path / "run"
    base = ["sanitize", str(data), "--out", str(run), "--until", "score", "--format", "json", *FAST]
    # Thresholds of 0 make every folder "poisoned"; with no split there is no poison estimate,
    # so the gate trips on the verdict alone, and the JSON result still carries it.
    tripped = runner.invoke(app, [*base, "--robust-ratio", "0", "--robust-min-z", "0", "--max-fit", "1",
                                  "--fail-over", "0.5"])
    assert tripped.exit_code == 1, tripped.stderr
    payload = json.loads(tripped.stdout)
    v = payload["dataset_verdict"]
    assert v["verdict"] == "poisoned" and v["suspected_class_name"] in ("class0", "class1", "class2")
    assert "estimated_poison_fraction" not in v and payload["report"] == {}
    assert "stopped before" in tripped.stderr
    assert (run / "score" / "scores.csv").is_file() and not (run / "partition").exists()
    # The same scores judged with the shipped thresholds: the verdict is recomputed, not cached.
    unjudged = runner.invoke(app, [*base, "--max-fit", "0", "--fail-over", "0.5"])
    assert unjudged.exit_code == 0 and "gate: not judged" in unjudged.stderr
    assert json.loads(unjudged.stdout)["dataset_verdict"]["verdict"] == "undetermined"
    # Stopped after the split, the estimate is there and the gate compares it as a full run does.
    split = runner.invoke(app, [*base[:5], "split", *base[6:], "--robust-ratio", "0", "--robust-min-z", "0",
                                "--max-fit", "1", "--fail-over", "1"])
    assert split.exit_code == 0, split.stderr
    assert "estimated_poison_fraction" in json.loads(split.stdout)["dataset_verdict"]
    # A run that stops before the score step has no verdict to gate on: refused before any work.
    early = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "early"), "--until", "train-poisoned",
                                "--fail-over", "0.1", *FAST])
    assert early.exit_code == 2 and "--until score" in early.stderr
    assert not (tmp_path / "early").exists()


def test_sharded_scoring_merges_to_the_whole(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=10)
    common = ["--image-size", "16", "--batch-size", "7"]
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "1", *common]).exit_code == 0
    model = str(tmp_path / "t" / "model.safetensors")
    whole = runner.invoke(app, ["score", str(data), "-m", model, "-o", str(tmp_path / "whole"), *common])
    assert whole.exit_code == 0
    out = str(tmp_path / "sharded")
    early = runner.invoke(app, ["score", str(data), "-m", model, "-o", out, "--merge", "3", *common])
    assert early.exit_code == 2 and "shard 1/3 is missing" in early.stderr
    for part in (1, 2, 3):
        r = runner.invoke(app, ["score", str(data), "-m", model, "-o", out, "--shard", f"{part}/3", *common])
        assert r.exit_code == 0, r.stderr
    merged = runner.invoke(app, ["score", str(data), "-m", model, "-o", out, "--merge", "3", *common])
    assert merged.exit_code == 0, merged.stderr
    from meca_cli.steps import read_scores

    a = read_scores(tmp_path / "whole" / "scores.csv")
    b = read_scores(tmp_path / "sharded" / "scores.csv")
    assert torch.allclose(a["kl"], b["kl"], rtol=1e-4, atol=1e-7) and torch.equal(a["pred"], b["pred"])


def test_export_and_predict(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=10, poison=3)
    run = tmp_path / "run"
    export = tmp_path / "sanitized"
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--export", str(export), *FAST])
    assert r.exit_code == 0, r.stderr
    exported = sorted(p.relative_to(export).as_posix() for p in export.rglob("*.png"))
    assert len(exported) == 33  # every sample, suspects filed under their new label
    rows = (run / "verdicts.csv").read_text().splitlines()[1:]
    classes = ["class0", "class1", "class2"]
    for row in rows:
        index, new_label = int(row.split(",")[0]), int(row.split(",")[-1])
        assert f"{classes[new_label]}/{index:07d}.png" in exported
    # An existing, non-empty export target is refused, and the clean mode writes the clean split only.
    again = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--export", str(export), *FAST])
    assert again.exit_code == 2 and "not empty" in again.stderr
    clean_only = tmp_path / "clean-only"
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--export", str(clean_only),
                            "--export-mode", "clean", *FAST])
    assert r.exit_code == 0
    assert len(list(clean_only.rglob("*.png"))) == sum(1 for row in rows if ",clean," in row)
    # predict: one CSV row per image on stdout.
    r = runner.invoke(app, ["predict", str(run / "relabel" / "model.safetensors"), str(data), "--image-size", "16"])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "index,path,label,pred,pred_class,conf" and len(lines) == 34


def test_uniform_unlearning_with_confidence_split(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=10, poison=3)
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "run"), "--format", "json", *FAST, *UNIFORM])
    assert r.exit_code == 0, r.stderr
    manifest = json.loads((tmp_path / "run" / "enhance" / "manifest.json").read_text())
    assert manifest["params"]["unlearn"] == "uniform"
    split = json.loads((tmp_path / "run" / "split" / "manifest.json").read_text())
    assert split["params"]["rule"] == "confidence" and split["params"]["min_confidence"] == 0.4


def test_no_command_writes_to_its_input_folder(runner, tmp_path):
    """Every command that reads a folder is run on it, hashing the folder after each."""
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=8, poison=3)
    before = snapshot(data)
    common = ["--image-size", "16"]
    t = tmp_path
    commands = [
        ["train", str(data), "-o", str(t / "t"), "--epochs", "1", "--batch-size", "8", *common],
        ["score", str(data), "-m", str(t / "t" / "model.safetensors"), "-o", str(t / "s"), *common],
        ["partition", str(t / "s" / "scores.csv"), "-o", str(t / "p")],
        ["enhance", str(data), "-m", str(t / "t" / "model.safetensors"), "--clean-seed", str(t / "p" / "clean_seed.idx"),
         "-o", str(t / "e"), "--rounds", "1", "--batch-size", "8", *common],
        ["split", str(data), "-m", str(t / "e" / "model.safetensors"), "--scores", str(t / "s" / "scores.csv"),
         "-o", str(t / "sp"), *common],
        ["relabel", str(data), "-m", str(t / "t" / "model.safetensors"), "--suspected", str(t / "sp" / "suspected.idx"),
         "-o", str(t / "r"), "--finetune-epochs", "1", "--batch-size", "8", *common],
        ["predict", str(t / "r" / "model.safetensors"), str(data), *common],
        ["evaluate", str(t / "r" / "model.safetensors"), str(data), *common],
        ["poison", str(data), str(t / "poisoned"), "--attack", "blend", "--rate", "0.2", "--target", "0", *common],
        ["poison", str(data), str(t / "triggered"), "--test", "--like", str(t / "poisoned"), *common],
        ["sanitize", str(data), "--out", str(t / "run"), "--export", str(t / "x"), *FAST],
        ["report", str(t / "run"), str(data), *common],
    ]
    for args in commands:
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args[0], r.stderr)
        assert snapshot(data) == before, f"'meca {args[0]}' changed its input folder"


def test_relabel_leaves_out_the_suspects_the_enhanced_model_holds(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=8)
    common = ["--image-size", "16", "--batch-size", "8"]
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "2", *common]).exit_code == 0
    model = str(tmp_path / "t" / "model.safetensors")
    (tmp_path / "suspected.idx").write_text("".join(f"{i}\n" for i in range(0, 24, 2)))

    def relabel(out, *extra):
        r = runner.invoke(app, ["relabel", str(data), "-m", model, "--suspected", str(tmp_path / "suspected.idx"),
                                "-o", str(tmp_path / out), "--finetune-epochs", "1", "--format", "json", *common, *extra])
        assert r.exit_code == 0, r.stderr
        rows = list(csv.DictReader(open(tmp_path / out / "relabeled.csv")))
        table = {int(x["index"]): (int(x["old_label"]), int(x["new_label"])) for x in rows}
        return json.loads(r.stdout)["summary"] | {"stderr": r.stderr}, table

    _, plain = relabel("plain", "--no-drop-held")
    # The enhanced model here is the same model. At a ceiling of 0 it "holds" every image as
    # every class, the other classes' images too: a collapse, so nothing is left out.
    summary, _ = relabel("all", "--enhanced-model", model, "--held-confidence", "0")
    assert summary["dropped"] == 0 and summary["finetune"]["samples"] == 24
    # At the median confidence of those suspects, the held ones (core.relabel) are left out.
    from meca_cli import steps
    from meca_cli.store.artifacts import read_csv, sha256_file
    from meca_cli.core.relabel import held_suspects
    from meca_cli.core.train import predict_logits
    from meca_cli.store.checkpoint import load_model

    dataset = steps.open_data(data, steps.Common("cpu", 16, None, False, False))
    probs = predict_logits(load_model(Path(model))[0], dataset.images, torch.device("cpu")).softmax(1)
    conf = probs.gather(1, dataset.labels.view(-1, 1)).squeeze(1)
    suspects = torch.arange(0, 24, 2)
    keeping = [i for i in suspects.tolist() if plain[i][0] == plain[i][1]]
    ceiling = float(conf[keeping].median())
    new = torch.tensor([plain[i][1] for i in range(24)])
    expected = held_suspects(new, dataset.labels, suspects, probs, ceiling).nonzero().squeeze(1).tolist()
    summary, dropped = relabel("some", "--enhanced-model", model, "--held-confidence", str(ceiling))
    assert expected and sorted(i for i, (_, n) in dropped.items() if n == -1) == expected
    assert summary["dropped"] == len(expected) and summary["finetune"]["samples"] == 24 - len(expected)
    summary, without = relabel("no-model")  # no enhanced model: nothing is left out, and it says so
    assert without == plain and "no --enhanced-model given" in summary["stderr"]


def test_relabel_leaves_out_the_suspects_it_would_relabel_unsure(runner, tmp_path):
    # The clean model learns the clean images alone; the three poisons filed under class0
    # (indices 8-10) look like other classes, so it would relabel them.
    make_image_folder(tmp_path / "clean", classes=3, per_class=8)
    make_image_folder(data := tmp_path / "data", classes=3, per_class=8, poison=3)
    common = ["--image-size", "16", "--batch-size", "8"]
    assert runner.invoke(app, ["train", str(tmp_path / "clean"), "-o", str(tmp_path / "t"), "--epochs", "2",
                               *common]).exit_code == 0
    suspects = (0, 8, 9, 10, 12)
    (tmp_path / "suspected.idx").write_text("".join(f"{i}\n" for i in suspects))

    def relabel(out, *extra):
        r = runner.invoke(app, ["relabel", str(data), "-m", str(tmp_path / "t" / "model.safetensors"), "--suspected",
                                str(tmp_path / "suspected.idx"), "-o", str(tmp_path / out), "--finetune-epochs", "1",
                                "--no-drop-held", "--format", "json", *common, *extra])
        assert r.exit_code == 0, r.stderr
        rows = csv.DictReader(open(tmp_path / out / "relabeled.csv"))
        return json.loads(r.stdout)["summary"] | {"stderr": r.stderr}, {int(x["index"]): int(x["new_label"]) for x in rows}

    summary, plain = relabel("plain")
    changed = [i for i in suspects if plain[i] != (0 if i < 11 else 1)]
    assert changed and summary["changed"] == len(changed) and summary["dropped"] == 0
    # At confidence 1, the changes the clean model makes at p under 1 are left out; the rest is as before.
    from meca_cli import steps
    from meca_cli.store.artifacts import read_csv, sha256_file
    from meca_cli.core.train import predict_logits
    from meca_cli.store.checkpoint import load_model

    dataset = steps.open_data(data, steps.Common("cpu", 16, None, False, False))
    probs = predict_logits(load_model(tmp_path / "t" / "model.safetensors")[0], dataset.images, torch.device("cpu"),
                           indices=torch.tensor(changed)).softmax(1)
    unsure_expected = [i for i, p in zip(changed, probs.max(1).values.tolist()) if p < 1]
    summary, unsure = relabel("unsure", "--relabel-confidence", "1")
    assert unsure_expected and sorted(i for i, n in unsure.items() if n == -1) == unsure_expected
    assert all(unsure[i] == plain[i] for i in plain if i not in unsure_expected)
    assert summary["dropped"] == len(unsure_expected) and summary["finetune"]["samples"] == 27 - len(unsure_expected)
    said = " ".join(summary["stderr"].split())  # the console wraps long lines
    assert f"{len(unsure_expected)} suspects left out of the final training (the clean model gives another label" in said


def _enhanced(runner, tmp_path, *flags: str):
    """`meca enhance` with FLAGS over a tiny folder's 2-epoch model: (its output folder, the result)."""
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    common = ["--image-size", "16", "--batch-size", "8"]
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "t"), "--epochs", "2", *common]).exit_code == 0
    (tmp_path / "seed.idx").write_text("0\n1\n12\n13\n24\n")
    r = runner.invoke(app, ["enhance", str(data), "-m", str(tmp_path / "t" / "model.safetensors"), "--clean-seed",
                            str(tmp_path / "seed.idx"), "-o", str(out := tmp_path / "e"), *flags, *common])
    assert r.exit_code == 0, r.stderr
    return out, r


def test_the_last_round_can_unlearn_the_least_held_labels_instead_of_the_highest_scores(runner, tmp_path):
    out, r = _enhanced(runner, tmp_path, "--rounds", "3", "--last-round-by", "confidence")
    # Round 2 unlearns the highest KL, the last round the lowest confidence: the top of `sign * column`.
    for k, column, sign in ((2, "kl", 1), (3, "conf", -1)):
        rows = list(csv.DictReader((out / f"rounds/round{k}_scores.csv").open()))
        value = {int(row["index"]): sign * float(row[column]) for row in rows}
        unlearned = set(map(int, (out / f"rounds/round{k}_clean.idx").read_text().split()))
        assert 0 < len(unlearned) < len(value)
        assert min(value[i] for i in unlearned) >= max(value[i] for i in set(value) - unlearned)
    by_kl = sorted(value, key=lambda i: -float(rows[i]["kl"]))[:len(unlearned)]
    assert set(by_kl) != unlearned  # the two orders differ here, so the test tells them apart


def test_enhancement_re_scores_every_kth_round_and_the_rounds_between_reuse_those_scores(runner, tmp_path):
    out, r = _enhanced(runner, tmp_path, "--rounds", "4", "--rescore-every", "2")
    scores = {k: (out / f"rounds/round{k}_scores.csv").read_text() for k in (2, 3, 4)}
    assert scores[3] == scores[2] != scores[4]  # rounds 2 and 4 re-score; round 3 takes round 2's scores
    kl = {int(row["index"]): float(row["kl"]) for row in csv.DictReader(io.StringIO(scores[2]))}
    for k in (2, 3):  # each round's clean set: the top of those scores at its own, larger rho
        unlearned = set(map(int, (out / f"rounds/round{k}_clean.idx").read_text().split()))
        assert min(kl[i] for i in unlearned) >= max(kl[i] for i in set(kl) - unlearned)
    rounds = list(csv.DictReader((out / "rounds.csv").open()))
    assert int(rounds[1]["clean_set"]) < int(rounds[2]["clean_set"])
    # Round 2's agreement would come from round 3's re-scoring, which does not happen.
    assert [r["agreement"] == "" for r in rounds] == [False, True, False, False]
    assert "round 2/4: unlearned" in r.stderr and "agreement not measured" in " ".join(r.stderr.split())
