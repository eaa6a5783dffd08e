"""`meca bench --defences`: the peer defences run on the benchmark's own runs.

Each defence repairs the run's no-defence model (same data, same model, same recipe) and
is scored on the same clean and triggered test folders as MeCa. The defences that need
clean data get a reserved clean set: a seeded, class-balanced 5 % (of the training-set
size) drawn from the CIFAR-10 training images *outside* the run's subset, so it was never
poisoned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from meca_cli import poisoning, steps
from meca_cli.console import info
from meca_cli.core.evaluation import model_metrics
from meca_cli.defences import NEEDS_CLEAN_DATA, abl, clp, cutmix, dbr, finepruning, finetuning, scanft
from meca_cli.store.artifacts import read_json, write_json
from meca_cli.store.checkpoint import load_model

RESERVED_FRACTION = 0.05


def reserved_clean(train_src: Path, per_class: int, seed: int, common: steps.Common,
                   fraction: float = RESERVED_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of the reserved clean set for the run (per_class, seed)."""
    from meca_cli.errors import ConfigError, DataError

    if per_class is None:
        raise ConfigError("the reserved clean set is drawn from training images outside the run's subset, "
                          "and this protocol trains on all of them", hint="run peer defences on cifar10-small")
    source = steps.open_data(train_src, common)
    classes = len(source.classes)
    outside = torch.ones(len(source), dtype=torch.bool)
    outside[poisoning.balanced_subset(source.labels, per_class, seed)] = False  # the run's own subset
    pool = outside.nonzero().squeeze(1)
    per = max(1, round(fraction * per_class))
    pick = pool[poisoning.balanced_subset(source.labels[pool], per, seed + 1)]
    if len(pick) != per * classes:
        raise DataError(f"{train_src}: too few images outside the run's subset for a reserved clean set "
                        f"of {per} per class")
    return source.images[pick], source.labels[pick]


@dataclass
class RunInputs:
    """What a defence may use from one benchmark run."""

    checkpoint: Path  # the no-defence model, and through its metadata the run's training recipe
    train: Path  # the poisoned training folder
    ground_truth: Path | None
    clean: tuple[torch.Tensor, torch.Tensor] | None  # the reserved clean set, for the defences that need one
    common: steps.Common


def _fresh_model(inputs: RunInputs, device: torch.device):
    """A new model of the run's architecture, the poisoned folder and the run's recipe."""
    from meca_cli.config import TrainConfig
    from meca_cli.core.models import build_model

    _, meta = load_model(inputs.checkpoint, device)
    train_cfg = TrainConfig(**(meta.config or {}))
    torch.manual_seed(train_cfg.seed)
    data = steps.open_data(inputs.train, inputs.common)
    return build_model(meta.arch, len(meta.classes), meta.image_size), data, train_cfg


def _detection(flagged: torch.Tensor, suspicion: torch.Tensor, ground_truth: Path | None) -> dict:
    """Recall/FPR of a detector's flagged set and AUROC of its suspicion score (higher = more suspect)."""
    from meca_cli.core.evaluation import read_ground_truth
    from meca_cli.core.metrics import auroc, detection

    if ground_truth is None or not ground_truth.is_file():
        return {}
    roles = read_ground_truth(ground_truth)
    poison = torch.tensor([roles[i] == "poison" for i in range(len(flagged))])
    found = detection(flagged, poison)
    return {"recall": found["recall"], "fpr": found["fpr"], "flagged": int(flagged.sum()),
            "auroc": auroc(suspicion, poison)}


def apply_defence(name: str, inputs: RunInputs, device: torch.device):
    """The repaired (or newly trained) model and what the defence reports about itself."""
    if name in ("abl", "cutmix"):
        model, data, train_cfg = _fresh_model(inputs, device)
        if name == "abl":
            model, isolated, losses = abl(model, data.images, data.labels, train_cfg, device)
            flagged = torch.zeros(len(data), dtype=torch.bool)
            flagged[isolated] = True
            return model, {"isolated": len(isolated), **_detection(flagged, -losses, inputs.ground_truth)}
        images, labels = inputs.clean
        return cutmix(model, data.images, data.labels, images, labels, train_cfg, device), \
            {"clean_samples": len(labels)}
    model, _ = load_model(inputs.checkpoint, device)
    if name == "clp":
        pruned = clp(model)
        return model, {"pruned_channels": sum(pruned.values())}
    if name == "dbr":
        data = steps.open_data(inputs.train, inputs.common)
        model, suspects, fct = dbr(model, data.images, data.labels, device)
        return model, _detection(suspects, fct, inputs.ground_truth)
    images, labels = inputs.clean
    if name == "finetuning":
        return finetuning(model, images, labels, device), {"clean_samples": len(labels)}
    if name == "finepruning":
        model, pruned = finepruning(model, images, labels, device)
        return model, {"clean_samples": len(labels), "pruned_channels": pruned}
    if name == "scanft":
        data = steps.open_data(inputs.train, inputs.common)
        model, flagged, z = scanft(model, data.images, data.labels, images, labels, device)
        top = max(z, key=z.get) if z else None
        # Suspicion for the AUROC: the class's z-score, on the members SCAn set apart.
        suspicion = torch.tensor([z.get(int(c), 0.0) for c in data.labels.tolist()])
        suspicion = torch.where(flagged, suspicion, suspicion - 1e3)
        return model, {"clean_samples": len(labels), "top_class": top, "top_class_z": round(z.get(top, 0.0), 3),
                       **_detection(flagged, suspicion, inputs.ground_truth)}
    raise ValueError(name)


def run_defences(bench_table: dict, results: Path, protocol: str, root: Path, work: Path, attacks: list[str],
                 seeds: list[int], defences: list[str], common: steps.Common) -> dict:
    """Measure each defence on every selected finished benchmark run. Results go to their
    own file (the benchmark may be writing its own meanwhile); resumable, saved after each."""
    table = read_json(results, {"meca_defences_version": "1", "runs": []}, "fix or remove it")
    device = steps.device_of(common)
    clean_test = steps.open_data(root / "test", common)
    selected = [r for r in bench_table["runs"]
                if r["protocol"] == protocol and r["attack"] in attacks and r["seed"] in seeds]
    if not selected:
        from meca_cli.console import warn

        warn(f"defences: no finished {protocol} run matches --attacks/--seeds; run the benchmark first")
    for run in selected:
        key = {"protocol": protocol, "attack": run["attack"], "seed": run["seed"]}
        entry = next((r for r in table["runs"] if all(r.get(k) == v for k, v in key.items())), None)
        if entry is None:
            # The no-defence result names the model repaired: a later run may train it again.
            entry = {**key, "no_defence": run.get("no_defence"), "defences": {}}
            table["runs"].append(entry)
        folder = work / protocol / f"{run['attack']}-s{run['seed']}"
        checkpoint = folder / "no-defence" / "model.safetensors"
        if not checkpoint.is_file():
            info(f"defences: {run['attack']} seed {run['seed']}: no no-defence model in {folder}; skipped")
            continue
        trig_dir = folder / "data" / "test-triggered"
        triggered = steps.open_data(trig_dir, common, min_classes=1) if trig_dir.is_dir() else None
        target = (run.get("no_defence") or {}).get("target")
        todo = [name for name in defences if name not in entry["defences"]]
        clean = reserved_clean(root / "train", run["per_class"], run["seed"], common) \
            if any(NEEDS_CLEAN_DATA[name] for name in todo) else None
        for name in todo:
            info(f"defences: {name} on {run['attack']} seed {run['seed']}")
            started = time.monotonic()
            _, meta = load_model(checkpoint, device)
            torch.manual_seed(run["seed"])
            inputs = RunInputs(checkpoint, folder / "data" / "train", folder / "data" / "train" / "ground_truth.csv",
                               clean if NEEDS_CLEAN_DATA[name] else None, common)
            model, notes = apply_defence(name, inputs, device)
            seconds = time.monotonic() - started
            entry["defences"][name] = {**model_metrics(model, meta, clean_test, triggered, target, device), **notes,
                                       "seconds": round(seconds, 2)}
            results.parent.mkdir(parents=True, exist_ok=True)
            write_json(results, table)
    return table
