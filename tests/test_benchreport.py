"""The peer-defence table of BENCHMARKS.md, rendered from hand-made result rows."""

import json

from meca_cli.benchreport import PAPER_ATTACKS, defences_table


def _run(attack: str, seed: int, acc: float, asr: float) -> dict:
    return {"attack": attack, "seed": seed, "no_defence": {"accuracy": acc, "asr": asr},
            "meca_final_model": {"accuracy": acc - 0.05, "asr": 0.0},
            "detection": {"recall": 0.99, "fpr": 0.1, "auroc": 0.9}, "seconds": {"sanitize_total": 600.0}}


def test_mean_row_weighs_every_paper_attack_once_whatever_its_seeds():
    # blend has two seeds (ASR 0.2 and 0.4: mean 0.3); each other paper attack one seed, ASR 0.5.
    runs = [_run(a, 0, 0.8, 0.5) for a in PAPER_ATTACKS if a != "blend"]
    runs += [_run("blend", 0, 0.8, 0.2), _run("blend", 1, 0.8, 0.4), _run("tact", 0, 0.8, 1.0)]
    peers = [{"attack": r["attack"], "seed": r["seed"],
              "defences": {"dbr": {"accuracy": 0.7, "asr": 0.01, "recall": 0.5, "fpr": 0.02, "auroc": 0.8,
                                   "seconds": 120.0}}} for r in runs]
    rows = defences_table(runs, peers)
    (mean,) = [row for row in rows if row.startswith("| mean of")]
    cells = [c.strip() for c in mean.strip("|").split("|")]
    # no-defence ASR: (4 * 0.5 + 0.3) / 5 = 0.46; tact (not in Table II's average) is left out.
    assert cells[2:4] == ["80.0", "46.0"]
    assert cells[4:6] == ["70.0", "1.0"] and cells[6:8] == ["75.0", "0.0"]  # dbr, MeCa final
    detection_head = next(row for row in rows if row.startswith("| attack | seeds | dbr"))
    assert detection_head.endswith("| MeCa |")
    assert any(row.startswith("| tact | 0 | 50.0 / 2.0 / 0.800 | 99.0 / 10.0 / 0.900 |") for row in rows)
    assert "dbr 2.0, MeCa (sanitize) 10.0." in rows[-3]


def test_no_mean_row_until_every_paper_attack_has_a_run():
    runs = [_run("badnet", 0, 0.8, 0.9)]
    peers = [{"attack": "badnet", "seed": 0, "defences": {"clp": {"accuracy": 0.7, "asr": 0.5, "seconds": 1.0}}}]
    rows = defences_table(runs, peers)
    assert not any(row.startswith("| mean of") for row in rows)
    assert any(row.startswith("| badnet | 0 | 80.0 | 90.0 | 70.0 | 50.0 | 75.0 | 0.0 |") for row in rows)


def test_headline_shows_the_final_models_target_class_accuracy():
    from meca_cli.benchreport import headline_table

    runs = [_run("badnet", 0, 0.8, 0.9), _run("badnet", 1, 0.8, 0.9)]
    runs[0]["meca_final_model"]["target_accuracy"] = 0.0
    runs[1]["meca_final_model"]["target_accuracy"] = 0.5
    head, _, row = headline_table(runs)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[[c.strip() for c in head.strip("|").split("|")].index("MeCa final target ACC")] == "25.0 ±25.0"


def test_round_by_round_table_lists_runs_that_kept_their_rounds():
    from meca_cli.benchreport import rounds_section

    kept = {"protocol": "p", "attack": "blend", "seed": 0,
            "detection": {"recall": 0.65, "rounds": [
                {"round": 1, "auroc": 0.78, "poison_unlearned_share": 0.004},
                {"round": 2, "auroc": 0.81, "poison_unlearned_share": 0.12}]}}
    older = {"protocol": "p", "attack": "badnet", "seed": 0,
             "detection": {"recall": 0.99, "rounds": [{"round": 1, "auroc": 0.6, "poison_unlearned_share": 0.0}]}}
    clean = {"protocol": "p", "attack": "clean", "seed": 0,
             "detection": {"recall": None, "rounds": [
                 {"round": 1, "auroc": None, "poison_unlearned_share": 0.0},
                 {"round": 2, "auroc": None, "poison_unlearned_share": 0.0}]}}
    lines = rounds_section([kept, older, clean])
    assert "| p | blend | 0 | 0.780 / 0.4 | 0.810 / 12.0 | 65.0 |" in lines
    assert not any("badnet" in line for line in lines)  # a run from before the rounds were kept
    assert not any(line.startswith("| p | clean |") for line in lines)  # no poison to rank
    assert rounds_section([older]) == []
    # The same run read from two results files is listed once.
    assert sum(line.startswith("| p | blend |") for line in rounds_section([kept, clean, kept])) == 1


def test_runs_measured_before_a_default_changed_are_named_with_what_differed():
    from meca_cli.benchreport import config_drift, drift_notes
    from meca_cli.config import SanitizeConfig
    from meca_cli.experiment import recorded_config

    now = recorded_config(SanitizeConfig().with_seed(3))
    assert config_drift(now) == ()
    # A run from before results recorded the tensor layout was measured in another one.
    assert config_drift(SanitizeConfig().with_seed(3).to_dict()) == ("before layout existed",)
    old = {**now, "train": {**now["train"], "epochs": 5},  # set by the protocol: no drift
           "enhance": {**now["enhance"], "rounds": 99},
           "relabel": {k: v for k, v in now["relabel"].items() if k != "drop_held"}}
    drift = config_drift(old)
    assert drift == ("before relabel.drop_held existed", f"enhance.rounds=99 (now {now['enhance']['rounds']})")
    assert config_drift(old, swept="enhance.rounds") == ("before relabel.drop_held existed",)
    # A parameter added at the behaviour earlier runs already had is no drift while it keeps that default.
    before_clean_epochs = {k: v for k, v in now.items() if k != "clean_epochs"}
    assert config_drift(before_clean_epochs) == ()
    assert config_drift({**now, "clean_epochs": 0.5}) == (f"clean_epochs=0.5 (now {now['clean_epochs']})",)
    # The score's batch size is the device's choice and no figure depends on it.
    assert config_drift({**now, "score": {**now["score"], "batch_size": 256}}) == ()
    notes = drift_notes([{"attack": "blend", "seed": 0, "config": old}, {"attack": "sig", "seed": 1, "config": now}])
    assert len(notes) == 2 and notes[0].startswith("† Not at the current defaults: blend seed 0;") and "sig" not in notes[0]


def test_headline_never_averages_seeds_measured_with_different_defaults():
    from meca_cli.benchreport import headline_table
    from meca_cli.config import SanitizeConfig
    from meca_cli.experiment import recorded_config

    now = recorded_config(SanitizeConfig())
    old = {**now, "enhance": {**now["enhance"], "rounds": 99}}
    runs = [_run("badnet", 0, 0.8, 0.9), _run("badnet", 1, 0.6, 0.5), _run("badnet", 2, 0.7, 0.7)]
    runs[0]["config"], runs[1]["config"], runs[2]["config"] = old, now, now
    rows = headline_table(runs)[2:]
    assert [r.split("|")[2].strip() for r in rows] == ["1,2", "0 † enhance.rounds=99"]  # current defaults first


def test_ablation_stars_todays_default_not_the_one_of_the_run():
    from meca_cli.benchreport import ablation_section
    from meca_cli.config import EnhanceConfig

    now, old = EnhanceConfig().rounds, EnhanceConfig().rounds - 2
    runs = [{**_run("badnet", 0, 0.8, 0.9), "param": "enhance.rounds", "value": v, "default": v == old}
            for v in (old, now)]
    rows = [line for line in ablation_section({"protocol": "p", "runs": runs}) if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [str(old), f"{now} *"]


def test_each_ablation_sweep_names_only_the_attacks_and_seeds_it_ran():
    from meca_cli.benchreport import ablation_section

    runs = [{**_run("badnet", 0, 0.8, 0.9), "param": "enhance.rounds", "value": 6, "default": True},
            {**_run("tact", 1, 0.8, 0.9), "param": "relabel.lost_class_share", "value": 0.4, "default": False}]
    lines = ablation_section({"protocol": "p", "runs": runs})
    rounds = next(line for line in lines if line.startswith("**enhance.rounds**"))
    assert "--attacks badnet --seeds 0 " in rounds
    headers = [line for line in lines if line.startswith("| value |")]
    assert headers == ["| value | badnet |", "| value | tact |"]


def test_peers_sit_beside_the_meca_run_of_the_no_defence_model_they_repaired():
    # Seed 0 of badnet was run again later (its no-defence model trained again: ACC 0.75);
    # the peers repaired the first model (ACC 0.8), so only the first run shares their row.
    first, again = _run("badnet", 0, 0.8, 0.9), _run("badnet", 0, 0.75, 0.9)
    again["meca_final_model"] = {"accuracy": 0.5, "asr": 0.5}
    peers = [{"attack": "badnet", "seed": 0, "no_defence": {"accuracy": 0.8, "asr": 0.9},
              "defences": {"clp": {"accuracy": 0.7, "asr": 0.5, "seconds": 1.0}}}]
    rows = defences_table([first, again], peers)
    assert any(row.startswith("| badnet | 0 | 80.0 | 90.0 | 70.0 | 50.0 | 75.0 | 0.0 |") for row in rows)
    # Without the record (older results), every run of the seed is averaged as before.
    del peers[0]["no_defence"]
    rows = defences_table([first, again], peers)
    assert any(row.startswith("| badnet | 0 | 77.5 ±2.5 | 90.0 ±0.0 |") for row in rows)


def test_targets_are_counted_per_run_against_plain_training_of_the_same_seed():
    from meca_cli.benchreport import targets_summary

    met = _run("badnet", 0, 0.78, 0.9)  # final ACC 0.73: 2 points under plain training (0.75) at most
    missed = _run("blend", 0, 0.8, 0.9)
    missed["meca_final_model"] = {"accuracy": 0.70, "asr": 0.5}
    missed["detection"] = {"recall": 0.5, "fpr": 0.2, "auroc": 0.6}
    control = _run("clean", 0, 0.75, 0.0)
    control["meca_final_model"] = {"accuracy": 0.745, "asr": None}
    for r, verdict in ((met, "poisoned"), (missed, "poisoned"), (control, "poisoned")):
        r["dataset_verdict"] = {"verdict": verdict}
    poisoned_line, control_line, _ = targets_summary([met, missed, control])
    assert "final ASR ≤ 1 %: 1 of 2; recall ≥ 99 %: 1 of 2; FPR ≤ 10 %: 1 of 2" in poisoned_line
    assert "same seed): 1 of 2; verdict \"poisoned\": 2 of 2." in poisoned_line
    assert control_line == ("Targets, clean control: final ACC within 1 point of plain training: 1 of 1; "
                            "verdict \"clean\": 0 of 1.")
    # Without a clean control of that seed, the accuracy target cannot be counted.
    assert "same seed): 0 of 0;" in targets_summary([met])[0]


def test_ablations_of_one_protocol_in_several_files_make_one_section(tmp_path):
    from meca_cli.benchreport import render_all

    def table(attack):
        return {"meca_ablation_version": "1", "protocol": "p",
                "runs": [{**_run(attack, 1, 0.8, 0.1), "param": "enhance.rounds", "value": 6, "default": True}]}

    files = []
    for i, attack in enumerate(("badnet", "tact")):
        files.append(tmp_path / f"a{i}.json")
        files[-1].write_text(json.dumps(table(attack)))
    text = render_all(files)
    assert text.count("## Ablation (p)") == 1
    assert "| value | badnet | tact |" in text


def test_the_reproduce_line_names_extra_seeds_of_one_attack_apart():
    from meca_cli.benchreport import _seed_groups

    runs = [{"attack": a, "seed": s} for a in ("badnet", "clean") for s in (0, 1)]
    runs += [{"attack": "clean", "seed": s} for s in (2, 3)]
    assert _seed_groups(runs, ["badnet", "clean"]) == [(["badnet", "clean"], [0, 1]), (["clean"], [2, 3])]
    assert _seed_groups(runs[:4], ["badnet", "clean"]) == [(["badnet", "clean"], [0, 1])]


def test_a_sweep_without_todays_default_takes_that_row_from_the_headline_runs():
    from meca_cli.benchreport import ablation_section
    from meca_cli.config import EnhanceConfig

    now = EnhanceConfig().rescore_every
    runs = [{**_run("badnet", 1, 0.7, 0.5), "param": "enhance.rescore_every", "value": now + 1, "default": False}]
    headline = [_run("badnet", 1, 0.8, 0.9), _run("badnet", 0, 0.6, 0.9), _run("tact", 1, 0.6, 0.9)]
    rows = [line for line in ablation_section({"protocol": "p", "runs": runs}, headline) if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [f"{now} * (headline runs)", str(now + 1)]
    assert rows[0].split("|")[2].strip().startswith("75.0 /")  # badnet seed 1 alone (with seed 0: 65.0)
    assert len(rows[0].split("|")) == 4  # no tact column
    # Without headline runs the table has the swept row alone.
    assert len([line for line in ablation_section({"protocol": "p", "runs": runs}) if line.startswith("| ")]) == 2


def test_a_sweep_missing_todays_default_for_some_seeds_fills_them_from_the_headline_runs():
    from meca_cli.benchreport import ablation_section
    from meca_cli.config import EnhanceConfig

    now = EnhanceConfig().rescore_every
    runs = [{**_run("badnet", s, 0.7, 0.5), "param": "enhance.rescore_every", "value": now + 1, "default": False}
            for s in (0, 1)]
    runs.append({**_run("badnet", 0, 0.8, 0.9), "param": "enhance.rescore_every", "value": now, "default": True})
    headline = [_run("badnet", 0, 0.5, 0.9), _run("badnet", 1, 0.6, 0.9), _run("badnet", 2, 0.1, 0.9)]
    rows = [line for line in ablation_section({"protocol": "p", "runs": runs}, headline) if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [str(now + 1), f"{now} * (with headline runs)"]
    # Seed 0 from the sweep (0.75), seed 1 from the headline (0.55); seed 2 was never swept.
    assert rows[1].split("|")[2].strip().startswith("65.0 ±10.0 /")


def test_missed_targets_are_listed_with_the_trigger_floor_and_the_most_hurt_class():
    from meca_cli.benchreport import gaps_section

    config = {"arch": "smallcnn", "train": {"epochs": 20, "seed": 0}}
    classes = {"airplane": 0.8, "automobile": 0.9}
    control = _run("clean", 0, 0.85, 0.0)
    control.update(config=config, no_defence={"accuracy": 0.85, "class_accuracy": classes})
    control["meca_final_model"] = {"accuracy": 0.80, "class_accuracy": {"airplane": 0.8, "automobile": 0.8}}
    control["detection"] = {"fpr": 0.1}
    at_floor = _run("physicalba", 0, 0.85, 0.9)  # ASR 3 %, poison all found, the trigger alone 2.5 %
    at_floor.update(protocol="p", config=config)
    at_floor["meca_final_model"] = {"accuracy": 0.84, "asr": 0.03, "class_accuracy": classes}
    at_floor["meca_clean_model"] = {"asr": 0.05}
    at_floor["detection"] = {"recall": 1.0, "fpr": 0.05, "auroc": 0.97, "fn": 0}
    met = _run("sig", 0, 0.85, 0.9)
    met.update(protocol="p", config=config)
    met["meca_final_model"] = {"accuracy": 0.84, "asr": 0.0, "class_accuracy": classes}
    met["detection"] = {"recall": 1.0, "fpr": 0.05, "auroc": 0.9, "fn": 0}
    floors = [{"protocol": "p", "attack": "physicalba", "seed": 0, "floor": {"asr": 0.025, "into_target": 0.012},
               "train": {"arch": "smallcnn", "epochs": 20, "seed": 0}},
              {"protocol": "p", "attack": "sig", "seed": 0, "floor": {"asr": 0.5},  # other training: not used
               "train": {"arch": "smallcnn", "epochs": 10, "seed": 0}}]
    relabelled = _run("blend", 0, 0.85, 0.9)  # no ASR left after step 6 (0.0), 20 % after step 7
    relabelled.update(protocol="p", config=config)
    relabelled["meca_final_model"] = {"accuracy": 0.84, "asr": 0.2, "class_accuracy": classes}
    relabelled["meca_clean_model"] = {"asr": 0.0}
    relabelled["detection"] = {"recall": 1.0, "fpr": 0.05, "auroc": 0.9, "fn": 0}
    text = "\n".join(gaps_section([control, at_floor, met, relabelled], floors))
    assert "| physicalba | 0 | ASR | 3.0 | 5.0 | 2.5 | 0 | 100.0 | 0.970 | 5.0 | 1.0 | – |" in text
    assert "| clean | 0 | ACC | – | – | – | – | – | – | 10.0 | 5.0 | automobile 10.0 |" in text
    assert "| sig |" not in text  # meets every target
    assert "(`meca bench --protocol p --floor --attacks physicalba --seeds 0`)" in text
    assert ("Trigger floor above the 1 % target: 1 of 1 poisoned runs. With no trigger at all, the never-poisoned "
            "models call 1.2 % of the other classes' clean test images the target.") in text
    assert ("ASR misses: 2; within 1 point of the trigger floor: 1; with 1 % or more of the poison left in training "
            "(recall under 99 %): 0; at or under 1 % after step 6, raised by step 7 (relabel and fine-tune): 1.") in text
    assert "| blend | 0 | ASR | 20.0 | 0.0 | – | 0 |" in text  # no floor measured for it
    # The clean control's 5 points: automobile lost 10 of its points, 5 of the 5 (two classes, balanced).
    assert "the most-hurt class alone accounts for 100-100 % of the gap" in text
    assert gaps_section([met], floors) == []
    # Another rate's runs take plain training from the protocol's clean control.
    at_floor["rate"] = 0.05
    text = "\n".join(gaps_section([at_floor], floors, controls=[control], by_rate=True))
    assert "| physicalba 5 % | 0 | ASR | 3.0 |" in text and "columns are those of the protocol's own table" in text
