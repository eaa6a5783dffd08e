"""The dataset verdict's two statistics on hand-made step-1 scores, and its rendering."""

import json

import torch

from meca_cli.config import VerdictConfig
from meca_cli.core.verdict import dataset_verdict, error_spread, robust_crowding

CLASSES = 10


def _clean_scores(per_class: int = 500, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores of a clean set: every class's KL drawn from one log-normal distribution shifted
    by the class's easiness (up to 0.3 of its spread), and its errors going to its two
    neighbours (c+1 and c-1)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    easiness = torch.linspace(0.0, 1.0, CLASSES)[labels]
    kl = torch.exp(torch.randn(len(labels), generator=gen) + 0.3 * easiness)
    pred = labels.clone()
    wrong = torch.rand(len(labels), generator=gen) < 0.2
    side = torch.where(torch.rand(len(labels), generator=gen) < 0.5, 1, -1)
    pred[wrong] = (labels[wrong] + side[wrong]) % CLASSES
    return {"label": labels, "kl": kl, "pred": pred}


def _verdict(s: dict, **kw) -> dict:
    return dataset_verdict(s["label"], s["kl"], s["pred"], CLASSES, **kw)


def test_a_clean_set_with_easy_and_hard_classes_is_clean():
    s = _clean_scores()
    v = _verdict(s)
    assert v["verdict"] == "clean" and v["suspected_class"] is None and v["reason"] is None
    assert v["robust_crowding"] < VerdictConfig().robust_ratio or v["robust_crowding_z"] < VerdictConfig().robust_min_z
    assert abs(v["error_spread"] - 2 / (CLASSES - 1)) < 0.01  # errors go to two of the nine others


def test_fitted_poison_crowds_the_lowest_scores_of_its_class():
    s = _clean_scores()
    poison = torch.arange(len(s["label"]))[s["label"] != 3][::19][:150]  # 3 % of the set, from every class
    s["label"][poison] = 3
    s["pred"][poison] = 3  # fitted: the model agrees with the poisoned label...
    s["kl"][poison] = 0.001 * torch.rand(len(poison))  # ...and is not moved by the perturbation
    crowding, z = robust_crowding(s["kl"], s["label"], CLASSES)
    assert int(crowding.argmax()) == 3 and crowding[3] > 3 and z[3] > VerdictConfig().robust_min_z
    v = _verdict(s)
    assert (v["verdict"], v["reason"], v["suspected_class"]) == ("poisoned", "robust", 3)


def test_unfitted_dirty_label_poison_spreads_its_class_errors_over_every_class():
    s = _clean_scores()
    poison = torch.arange(len(s["label"]))[s["label"] != 3][::15][:300]
    true_class = s["label"][poison].clone()
    s["label"][poison] = 3
    s["pred"][poison] = true_class  # unfitted: the model calls each poison by what it shows
    spread = error_spread(s["label"], s["pred"], CLASSES)
    assert int(spread.argmax()) == 3 and spread[3] > 0.9
    v = _verdict(s)
    assert (v["verdict"], v["reason"], v["suspected_class"]) == ("poisoned", "spread", 3)


def test_on_a_small_folder_a_high_crowding_by_chance_is_not_enough():
    s = _clean_scores(per_class=30)  # a tail of 3 images: one class can fill it by chance
    crowding, z = robust_crowding(s["kl"], s["label"], CLASSES)
    top = int(crowding.argmax())
    assert crowding[top] >= VerdictConfig().robust_ratio and z[top] < VerdictConfig().robust_min_z
    assert _verdict(s)["verdict"] == "clean"


def test_a_class_with_too_few_errors_takes_no_part_in_the_spread():
    s = _clean_scores(per_class=40)
    assert torch.isnan(error_spread(s["label"], s["pred"], CLASSES)).all()  # about 8 errors a class
    v = _verdict(s)
    assert v["error_spread"] is None and v["error_spread_class"] is None and v["verdict"] == "clean"


def test_the_split_gives_the_poison_estimate_of_the_named_class():
    s = _clean_scores()
    suspected = torch.zeros(len(s["label"]), dtype=torch.bool)
    suspected[s["label"] == 3] = True  # the whole class suspected, no other
    v = _verdict(s, cfg=VerdictConfig(robust_ratio=0.0, robust_min_z=0.0), suspected=suspected)
    assert v["verdict"] == "poisoned" and v["suspected_fraction"] == 0.1
    assert v["estimated_poison_fraction"] == (0.1 if v["suspected_class"] == 3 else 0.0)
    assert "estimated_poison_fraction" not in _verdict(s)


def test_benchmarks_md_gives_todays_verdict_and_its_error_rates(tmp_path):
    from meca_cli.benchreport import render_all
    from meca_cli.config import SanitizeConfig
    from meca_cli.experiment import recorded_config

    today = recorded_config(SanitizeConfig())
    old = {**today, "verdict": {"concentration": 3.0}}

    def run(attack, seed, config, verdict):
        return {"protocol": "cifar10-small", "attack": attack, "seed": seed, "rate": 0.05, "config": config,
                "no_defence": {"accuracy": 0.8, "asr": 0.9}, "meca_final_model": {"accuracy": 0.75, "asr": 0.01},
                "detection": {"recall": 0.99, "fpr": 0.1, "auroc": 0.9}, "seconds": {"sanitize_total": 60.0},
                "dataset_verdict": {"verdict": verdict}}

    def measured(attack, seed, verdict):
        v = {"verdict": verdict, "robust_crowding": 1.5, "robust_crowding_class": 8, "error_spread": None,
             "error_spread_class": None}
        return {"protocol": "cifar10-small", "attack": attack, "seed": seed, "rate": 0.0 if attack == "clean" else 0.05,
                "verdict": v, "config": today}

    # Runs whose recorded verdict used the old statistic: "poisoned" everywhere.
    bench = {"meca_bench_version": "1", "runs": [run("badnet", 0, old, "poisoned"), run("clean", 0, old, "poisoned"),
                                                 run("wanet", 0, old, "poisoned")]}
    verdicts = {"meca_verdict_version": "1", "runs": [measured("badnet", 0, "poisoned"), measured("clean", 0, "clean"),
                                                      measured("wanet", 0, "clean")]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "verdict.json").write_text(json.dumps(verdicts))
    text = render_all(sorted(tmp_path.glob("*.json")))
    assert "†" not in text  # another verdict statistic is not efficacy drift
    assert "false alarms on 0 of 1 clean runs; misses on 1 of 2 poisoned runs: wanet 5 % seed 0." in text
    assert "`meca bench --protocol cifar10-small --verdict --attacks" in text
    rows: dict[str, str] = {}
    for line in text.splitlines():  # the headline table's row of each attack: the first one
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert rows["clean"].split("|")[-3].strip() == "clean"  # the headline's verdict is today's
    assert "verdict \"clean\": 1 of 1." in text
    # Without a measurement at today's settings a run shows no verdict rather than the old one.
    (tmp_path / "verdict.json").unlink()
    text = render_all(sorted(tmp_path.glob("*.json")))
    assert "verdict \"clean\": 0 of 0." in text and "Dataset verdict (`meca bench --verdict`)" not in text


def test_a_model_that_fits_nearly_every_label_leaves_the_verdict_undetermined():
    s = _clean_scores()
    poison = torch.arange(len(s["label"]))[s["label"] != 3][::19][:150]
    s["label"][poison] = 3
    s["kl"][poison] = 0.001 * torch.rand(len(poison))  # robust: crowds the lowest scores
    s["pred"] = s["label"].clone()  # ...but the model agrees with every label
    v = _verdict(s)
    assert (v["verdict"], v["reason"], v["suspected_class"], v["fit"]) == ("undetermined", "fit", None, 1.0)
    assert v["robust_crowding_class"] == 3 and v["robust_crowding"] > VerdictConfig().robust_ratio  # still reported
    v = _verdict(s, suspected=s["label"] == 3)
    assert v["estimated_poison_fraction"] == 0.0  # nothing named, nothing estimated
    s["pred"][::5] = (s["label"][::5] + 1) % CLASSES  # agreement 80 %: judged again
    assert _verdict(s)["verdict"] == "poisoned"
