"""`meca poison`: write a poisoned copy of an image folder, with ground truth and the trigger.

Training mode writes every sample (triggers baked in, PNG so nothing is lost), a
ground_truth.csv keyed by the *poisoned* folder's sample index, the attack card
(meca-attack.json) and trigger_state.safetensors. Test mode writes the triggered test
folder the attack success rate is measured on: only the images the ASR counts, with their
true labels, triggered with the attack's test-time trigger.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from meca_cli.core.attacks import AttackConfig, apply_test_trigger, asr_population, poison
from meca_cli.core.data import ImageSet
from meca_cli.core.evaluation import ATTACK_CARD, read_attack_card
from meca_cli.datasets import write_png
from meca_cli.errors import ArtifactError, DataError
from meca_cli.store.artifacts import atomic_write_text, format_csv
from meca_cli.store.checkpoint import load_tensors, save_tensors

GROUND_TRUTH = "ground_truth.csv"
TRIGGER_STATE = "trigger_state.safetensors"
GT_COLUMNS = ("index", "path", "source_path", "original_label", "label", "role", "detail")


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded class-balanced subset (at most per_class of each class)."""
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(picks).sort().values


def _staging(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output path is a file", hint="choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: output folder exists and is not empty", hint="choose a new folder or remove it")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, out: Path) -> None:
    """Move a finished folder into place, so `out` never holds a half-written data set."""
    if out.exists():
        out.rmdir()
    staging.rename(out)


def _card(config: AttackConfig, mode: str, source: Path, counts: dict) -> str:
    return json.dumps({"meca_attack_version": "1", "mode": mode, "attack": config.name, "target": config.target,
                       "source_folder": str(source), "config": asdict(config), "counts": counts}, indent=2) + "\n"


def config_from_card(folder: Path) -> tuple[AttackConfig, dict[str, torch.Tensor]]:
    """The attack config and trigger state of a folder written by `meca poison`."""
    card_path, state_path = Path(folder) / ATTACK_CARD, Path(folder) / TRIGGER_STATE
    if not card_path.is_file() or not state_path.is_file():
        raise ArtifactError(f"{folder}: not a folder written by 'meca poison' (no {ATTACK_CARD} / {TRIGGER_STATE})")
    try:
        cfg = dict(read_attack_card(folder)["config"])
        for key in ("cover_classes", "adaptive_patch_alphas"):
            cfg[key] = tuple(cfg[key])
        config = AttackConfig(**cfg)
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{card_path}: attack card is not one 'meca poison' wrote (edited?)",
                            hint="re-create the folder with 'meca poison'") from None
    tensors, _ = load_tensors(state_path)
    return config, tensors


def write_poisoned(dataset: ImageSet, out: Path, config: AttackConfig, subset: torch.Tensor | None = None) -> dict:
    """Poison `dataset` (or its subset) and write it as a new folder at `out`."""
    pick = torch.arange(len(dataset)) if subset is None else subset
    images, labels = dataset.images[pick], dataset.labels[pick]
    result = poison(images, labels, len(dataset.classes), config)
    staging = _staging(out)
    rels = [f"{dataset.classes[int(result.labels[k])]}/{k:05d}.png" for k in range(len(pick))]
    for k, rel in enumerate(rels):
        write_png(staging / rel, result.images[k])
    # The poisoned folder's own scan order (class, then path) gives the ground truth's index.
    order = sorted(range(len(pick)), key=lambda k: (int(result.labels[k]), rels[k]))
    rows = [(new, rels[k], dataset.scan.paths[int(pick[k])], int(labels[k]), int(result.labels[k]), result.roles[k],
             result.details[k]) for new, k in enumerate(order)]
    atomic_write_text(staging / GROUND_TRUTH, format_csv(GT_COLUMNS, rows))
    save_tensors(staging / TRIGGER_STATE, result.trigger_state, {"meca.attack": config.name})
    counts = {role: result.roles.count(role) for role in ("clean", "poison", "cover")}
    atomic_write_text(staging / ATTACK_CARD, _card(config, "train", dataset.scan.root, counts))
    _publish(staging, Path(out))
    return {"attack": config.name, "samples": len(pick), **counts, "target": config.target}


def write_triggered(dataset: ImageSet, out: Path, config: AttackConfig, trigger_state: dict[str, torch.Tensor]) -> dict:
    """Write the ASR population of a clean test folder with the test-time trigger applied."""
    counted = asr_population(dataset.labels, config).nonzero().squeeze(1)
    triggered = apply_test_trigger(dataset.images[counted], config, trigger_state)
    staging = _staging(out)
    for k, i in enumerate(counted.tolist()):
        write_png(staging / f"{dataset.classes[int(dataset.labels[i])]}/{i:05d}.png", triggered[k])
    save_tensors(staging / TRIGGER_STATE, trigger_state, {"meca.attack": config.name})
    atomic_write_text(staging / ATTACK_CARD, _card(config, "test", dataset.scan.root, {"triggered": len(counted)}))
    _publish(staging, Path(out))
    return {"attack": config.name, "triggered": len(counted), "target": config.target}
