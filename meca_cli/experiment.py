"""One measured experiment: poison a clean folder, (optionally) train with no defence,
sanitize, and score everything against ground truth. `meca demo` runs one; `meca bench`
runs a matrix of them. Every stage is skipped when its output is already complete, so an
interrupted experiment resumes where it stopped.

WORK/
  data/train/           poisoned training folder + ground_truth.csv (meca poison)
  data/test-triggered/  triggered test folder (meca poison --test)
  no-defence/           model trained on the poisoned folder as is
  run/                  meca sanitize
  result.json
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


from meca_cli import poisoning, steps
from meca_cli.console import info
from meca_cli.core.attacks import AttackConfig
from meca_cli.core.evaluation import detection_metrics, model_metrics, round_metrics
from meca_cli.config import SanitizeConfig
from meca_cli.pipeline import sanitize
from meca_cli.store.artifacts import write_json
from meca_cli.store.checkpoint import load_model

CLEAN = "clean"  # the control: no attack


@dataclass(frozen=True)
class Experiment:
    train_src: Path
    test_src: Path
    work: Path
    attack: str = "badnet"
    rate: float = 0.05
    target: int = 1
    per_class: int | None = None  # class-balanced training subset
    seed: int = 0
    no_defence: bool = True


def _attack_config(exp: Experiment) -> AttackConfig:
    if exp.attack == CLEAN:
        return AttackConfig(name="badnet", rate=0.0, cover_rate=0.0, target=exp.target, seed=exp.seed)
    return AttackConfig(name=exp.attack, rate=exp.rate, target=exp.target, seed=exp.seed)


def prepare_data(exp: Experiment, common: steps.Common) -> tuple[Path, Path | None]:
    """The poisoned training folder and the triggered test folder (None for the clean control)."""
    train_dir, trig_dir = exp.work / "data" / "train", exp.work / "data" / "test-triggered"
    config = _attack_config(exp)
    if not train_dir.is_dir():
        source = steps.open_data(exp.train_src, common)
        subset = poisoning.balanced_subset(source.labels, exp.per_class, exp.seed) if exp.per_class else None
        info(f"poison: {exp.attack} -> {train_dir}")
        poisoning.write_poisoned(source, train_dir, config, subset)
    if exp.attack == CLEAN:
        return train_dir, None
    if not trig_dir.is_dir():
        config, state = poisoning.config_from_card(train_dir)
        poisoning.write_triggered(steps.open_data(exp.test_src, common), trig_dir, config, state)
    return train_dir, trig_dir


def evaluate_checkpoint(checkpoint: Path, exp: Experiment, trig_dir: Path | None, common: steps.Common) -> dict:
    device = steps.device_of(common)
    model, meta = load_model(checkpoint, device)
    clean = steps.open_data(exp.test_src, common)
    trig = steps.open_data(trig_dir, common, min_classes=1) if trig_dir is not None else None
    return model_metrics(model, meta, clean, trig, exp.target, device)


def run_experiment(exp: Experiment, cfg: SanitizeConfig, common: steps.Common, start: str | None = None,
                   previous: dict | None = None) -> dict:
    """Run (or resume) the experiment; returns and writes WORK/result.json.

    With `start`, sanitize recomputes from that step on over the run's saved earlier steps
    (as `meca sanitize --from` does), and the no-defence result is taken from `previous`:
    a change to a late step is measured without retraining what it does not reach."""
    started = time.monotonic()
    train_dir, trig_dir = prepare_data(exp, common)
    result: dict = {"attack": exp.attack, "rate": exp.rate if exp.attack != CLEAN else 0.0, "seed": exp.seed,
                    "per_class": exp.per_class, "train_samples": None}
    if start is not None and previous is not None and "no_defence" in previous:
        result["no_defence"] = previous["no_defence"]
    elif exp.no_defence:
        nd = steps.train(train_dir, exp.work / "no-defence", common, cfg.train, cfg.arch, name="no-defence")
        result["no_defence"] = {**evaluate_checkpoint(exp.work / "no-defence" / "model.safetensors", exp, trig_dir, common),
                                "seconds": nd.summary.get("seconds")}
    run = sanitize(train_dir, exp.work / "run", common, cfg, start=start)
    report = run.report
    result["train_samples"] = report["samples"]
    result["detection"] = detection_metrics(exp.work / "run" / "verdicts.csv", train_dir / poisoning.GROUND_TRUTH)
    result["detection"]["rounds"] = round_metrics(exp.work / "run", train_dir / poisoning.GROUND_TRUTH)
    result["dataset_verdict"] = report["dataset_verdict"]
    result["meca_clean_model"] = evaluate_checkpoint(Path(report["clean_model"]), exp, trig_dir, common)
    result["meca_final_model"] = evaluate_checkpoint(Path(report["final_model"]), exp, trig_dir, common)
    result["seconds"] = {**report["seconds"], "sanitize_total": round(sum(v or 0 for v in report["seconds"].values()), 2)}
    result["wall_seconds"] = round(time.monotonic() - started, 2)
    result["config"] = recorded_config(cfg)
    if start is not None:
        result["measured_from"] = start  # earlier steps are the saved ones, made with `previous["config"]`
        result["earlier_steps_config"] = (previous or {}).get("config")
    write_json(exp.work / "result.json", result)
    return result


def recorded_config(cfg: SanitizeConfig) -> dict:
    """The configuration a result records: the sanitize parameters and the tensor layout,
    which changes the convolutions' float rounding and so every figure at the last digits
    (core.device); a run measured in another layout is not at the current defaults."""
    from meca_cli.core.device import layout_name

    return {**cfg.to_dict(), "layout": layout_name()}


def refresh_model_metrics(result: dict, exp: Experiment, common: steps.Common) -> bool:
    """Measure, from a finished run's saved models, the model metrics its result predates
    (the target-class accuracy); True if the result changed. The models are not retrained."""
    checkpoints = {"no_defence": exp.work / "no-defence" / "model.safetensors",
                   "meca_clean_model": exp.work / "run" / "train-clean" / "model.safetensors",
                   "meca_final_model": exp.work / "run" / "relabel" / "model.safetensors"}
    stale = [k for k, path in checkpoints.items()
             if k in result and "target_accuracy" not in result[k] and path.is_file()]
    if not stale:
        return False
    _, trig_dir = prepare_data(exp, common)
    for key in stale:
        info(f"bench: {exp.attack} seed {exp.seed}: measuring {key} again for its target-class accuracy")
        result[key] = {**result[key], **evaluate_checkpoint(checkpoints[key], exp, trig_dir, common)}
    return True
