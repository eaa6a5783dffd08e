"""`sanitize`: the seven MeCa steps chained over one run directory, nothing re-implemented.

RUN/
  train-poisoned/  model.safetensors          step 1: short training on all of D
  score/           scores.csv                 step 2: KL robustness scores
  partition/       clean_seed.idx rest.idx    step 3: seed clean set
  enhance/         model.safetensors rounds.csv   step 4: backdoor-enhanced model
  split/           clean.idx suspected.idx split.csv   step 5
  train-clean/     model.safetensors          step 6: trained on the clean split only
  relabel/         relabeled.csv model.safetensors   step 7: the final model
  verdicts.csv  report.json

The dataset verdict needs only steps 1-2 (core.verdict), so a run stopped after `score`
already has it: a CI gate at about a fifth of the cost (the poison fraction, estimated from
the split, is then unknown).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.console import info
from meca_cli.config import SanitizeConfig
from meca_cli.core.partition import mostly_suspected_classes
from meca_cli.core.relabel import DROPPED
from meca_cli.core.verdict import dataset_verdict
from meca_cli.errors import ConfigError
from meca_cli.store.artifacts import write_json, read_csv, write_csv

STEPS = ("train-poisoned", "score", "partition", "enhance", "split", "train-clean", "relabel")
VERDICT_COLUMNS = ("index", "path", "label", "kl", "enhanced_pred", "verdict", "new_label")
REPORT_VERSION = "1"


@dataclass
class SanitizeResult:
    run: Path
    steps: list[steps.StepResult] = field(default_factory=list)
    report: dict = field(default_factory=dict)  # a run through the last step only
    verdict: dict | None = None  # the dataset verdict, once the score step has run


def _select(start: str | None, until: str | None) -> tuple[int, int]:
    for name in (start, until):
        if name is not None and name not in STEPS:
            raise ConfigError(f"unknown step {name!r}", hint=f"steps are: {', '.join(STEPS)}")
    lo = STEPS.index(start) if start else 0
    hi = STEPS.index(until) if until else len(STEPS) - 1
    if lo > hi:
        raise ConfigError(f"--from {start} comes after --until {until}")
    return lo, hi


def sanitize(data: Path, run: Path, common: steps.Common, cfg: SanitizeConfig = SanitizeConfig(),
             start: str | None = None, until: str | None = None, export: Path | None = None,
             export_mode: str = "relabeled") -> SanitizeResult:
    """Run the pipeline over `run`; steps before `start` must be complete, `start` onwards are
    recomputed when `start` is given, and nothing after `until` runs."""
    run = Path(run)
    lo, hi = _select(start, until)
    if export is not None:
        check_export_target(data, Path(export), export_mode)  # before the work, not after it
    result = SanitizeResult(run)
    d = {name: run / name for name in STEPS}
    poisoned_cfg = replace(cfg.train, epochs=max(1, round(cfg.train.epochs * cfg.poisoned_epochs)),
                           min_steps=min(cfg.train.min_steps, cfg.poisoned_min_steps))
    clean_cfg = replace(cfg.train, epochs=max(1, round(cfg.train.epochs * cfg.clean_epochs)))

    # Each step reads the previous steps' artifacts by their fixed names in the run directory.
    actions = {
        "train-poisoned": lambda c: steps.train(data, d["train-poisoned"], c, poisoned_cfg, cfg.arch,
                                                name="train-poisoned"),
        "score": lambda c: steps.score(data, d["train-poisoned"] / "model.safetensors", d["score"], c, cfg.score),
        "partition": lambda c: steps.partition(d["score"] / "scores.csv", d["partition"], cfg.rho0, force=c.force),
        "enhance": lambda c: steps.enhance(data, d["train-poisoned"] / "model.safetensors",
                                           d["partition"] / "clean_seed.idx", d["enhance"], c, cfg.enhance, cfg.score),
        "split": lambda c: steps.split(data, d["enhance"] / "model.safetensors", d["split"], c, cfg.split,
                                       scores=d["score"] / "scores.csv"),
        "train-clean": lambda c: steps.train(data, d["train-clean"], c, clean_cfg, cfg.arch,
                                             indices=d["split"] / "clean.idx", name="train-clean"),
        "relabel": lambda c: steps.relabel(data, d["train-clean"] / "model.safetensors", d["split"] / "suspected.idx",
                                           d["relabel"], c, cfg.relabel, d["enhance"] / "model.safetensors"),
    }

    for i, name in enumerate(STEPS):
        if i > hi:
            break
        if i < lo:
            if not (d[name] / "manifest.json").is_file():
                raise ConfigError(f"--from {STEPS[lo]}: earlier step {name!r} has not completed in {run}",
                                  hint=f"run without --from first, or --from {name}")
            continue
        info(f"[{i + 1}/{len(STEPS)}] {name}")
        result.steps.append(actions[name](replace(common, force=common.force or start is not None)))
    if hi == len(STEPS) - 1:
        result.report = write_report(data, run, common, cfg, result.steps)
        result.verdict = result.report["dataset_verdict"]
        from meca_cli.report import build_report

        info(f"report: {build_report(run, data, common)}")
        if export is not None:
            export_folder(data, run, export, common, export_mode)
    elif hi >= STEPS.index("score"):
        suspected = (suspected_mask(read_csv(run / "split" / "split.csv", steps.SPLIT_COLUMNS))
                     if hi >= STEPS.index("split") else None)
        result.verdict = verdict_of(data, run, common, cfg, suspected)
    return result


def suspected_mask(split_rows: list[dict]) -> torch.Tensor:
    """The split's verdict per sample (the rows of split.csv) as a boolean mask."""
    return torch.tensor([r["verdict"] == "suspected" for r in split_rows])


def verdict_of(data: Path, run: Path, common: steps.Common, cfg: SanitizeConfig,
               suspected: torch.Tensor | None = None) -> dict:
    """The dataset verdict from the step-1 scores (core.verdict), with the suspected class's
    name; with the split's `suspected` mask, also the estimated poison fraction."""
    classes = steps.open_data(data, common).classes
    scores = steps.read_scores(run / "score" / "scores.csv")
    verdict = dataset_verdict(scores["label"], scores["kl"], scores["pred"], len(classes), cfg.verdict,
                              suspected=suspected)
    if verdict["suspected_class"] is not None:
        verdict["suspected_class_name"] = classes[verdict["suspected_class"]]
    return verdict


def write_report(data: Path, run: Path, common: steps.Common, cfg: SanitizeConfig,
                 results: list[steps.StepResult]) -> dict:
    """verdicts.csv (one row per sample) and report.json (the dataset-level summary)."""
    dataset = steps.open_data(data, common)
    split_rows = read_csv(run / "split" / "split.csv", steps.SPLIT_COLUMNS)
    relabel_rows = read_csv(run / "relabel" / "relabeled.csv", steps.RELABEL_COLUMNS)
    suspected = suspected_mask(split_rows)
    # new_label as a number: read back as text, the -1 of a left-out sample would be escaped.
    write_csv(run / "verdicts.csv", VERDICT_COLUMNS,
              ((s["index"], s["path"], s["label"], s["kl"], s["enhanced_pred"], s["verdict"], int(r["new_label"]))
               for s, r in zip(split_rows, relabel_rows)))
    verdict = verdict_of(data, run, common, cfg, suspected)
    manifests = {name: _summary(run / name) for name in STEPS}
    report = {
        "meca_report_version": REPORT_VERSION,
        "data": str(data),
        "samples": len(dataset),
        "classes": dataset.classes,
        "suspected": int(suspected.sum()),
        "skipped_images": [{"path": p, "reason": r} for p, r in dataset.scan.skipped],
        "relabeled_changed": manifests["relabel"].get("changed"),
        "left_out": manifests["relabel"].get("dropped"),  # suspects the final model was not trained on
        # Classes the final model will hardly know (see core.partition.mostly_suspected_classes).
        "mostly_suspected_classes": {dataset.classes[c]: share for c, share in
                                     mostly_suspected_classes(suspected, dataset.labels, len(dataset.classes),
                                                              cfg.relabel.lost_class_share).items()},
        "dataset_verdict": verdict,
        "final_model": str(run / "relabel" / "model.safetensors"),
        "clean_model": str(run / "train-clean" / "model.safetensors"),
        "seconds": {name: manifests[name].get("seconds") for name in STEPS},
        "config": cfg.to_dict(),
    }
    write_json(run / "report.json", report)
    return report


def _summary(step_dir: Path) -> dict:
    from meca_cli.store.manifest import read_manifest

    manifest = read_manifest(step_dir)
    return (manifest or {}).get("summary", {})


def export_plan(verdicts: Path, paths: list[str], classes: int, mode: str) -> list[tuple[int, int]]:
    """(index, new label) of every sample to export, checked against the folder before a
    file is copied: a hand-edited verdicts.csv fails here, not half-way through the copy."""
    from meca_cli.errors import ArtifactError
    from meca_cli.store.artifacts import parse_int, safe_cell

    picks, seen = [], set()
    for lineno, row in enumerate(read_csv(verdicts, VERDICT_COLUMNS), 2):
        index, new_label = parse_int(row, "index", verdicts, lineno), parse_int(row, "new_label", verdicts, lineno)
        if not 0 <= index < len(paths) or index in seen or safe_cell(paths[index]) != row["path"]:
            raise ArtifactError(f"{verdicts}:{lineno}: sample {index} ({row['path']!r}) is not that sample "
                                "of the folder (edited, or the folder changed)", hint="re-run 'meca sanitize'")
        if not (0 <= new_label < classes or new_label == DROPPED):
            raise ArtifactError(f"{verdicts}:{lineno}: label {new_label} is not a class index (0..{classes - 1})",
                                hint="re-run 'meca sanitize' to rewrite it")
        seen.add(index)
        if new_label != DROPPED and (mode == "relabeled" or row["verdict"] == "clean"):
            picks.append((index, new_label))
    if len(seen) != len(paths):
        raise ArtifactError(f"{verdicts}: holds {len(seen)} of the folder's {len(paths)} samples",
                            hint="re-run 'meca sanitize' to rewrite it")
    return picks


def check_export_target(data: Path, target: Path, mode: str) -> None:
    """Refuse an export that cannot be written, before any work is done."""
    from meca_cli.errors import DataError

    if mode not in ("relabeled", "clean"):
        raise ConfigError(f"unknown export mode {mode!r}", hint="use relabeled or clean")
    if target.resolve().is_relative_to(Path(data).resolve()):
        raise DataError(f"{target}: export folder is inside the input folder {data}, which is never modified",
                        hint="choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: export target is a file", hint="choose a new folder")
    if target.is_dir() and any(target.iterdir()):
        raise DataError(f"{target}: export folder exists and is not empty", hint="choose a new folder")


def export_folder(data: Path, run: Path, target: Path, common: steps.Common, mode: str = "relabeled") -> int:
    """Copy the sanitized data set to `target` as a new image folder.

    mode 'relabeled': every sample, suspects filed under their new label; 'clean': the clean
    split only. Files are copied (never linked) and only inside `target`.
    """
    target = Path(target)
    check_export_target(data, target, mode)
    scan = steps.open_data(data, common).scan  # the samples the run indexed (--skip-bad ones left out)
    picks = export_plan(run / "verdicts.csv", scan.paths, len(scan.classes), mode)
    staging = target.with_name(f".{target.name}.partial")
    if staging.is_symlink():
        staging.unlink()  # never follow a planted link out of the target's parent
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for index, new_label in picks:
        src = scan.root / scan.paths[index]
        name = f"{index:07d}{src.suffix.lower()}"  # fresh names: nothing from the input can escape the target
        dest = staging / scan.classes[new_label] / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    written = len(picks)
    target.mkdir(parents=True, exist_ok=True)
    for child in staging.iterdir():
        child.rename(target / child.name)
    staging.rmdir()
    info(f"export: wrote {written} images to {target}")
    return written
