"""The pipeline steps as importable functions: each reads artifacts, writes artifacts into
its own directory, and finishes with a manifest. Commands and `sanitize` both call these;
nothing here parses flags or prints results.

A step is skipped ("up to date") when its manifest matches its inputs and parameters;
otherwise its manifest is removed first and rewritten last, so a crash never leaves a step
marked complete over partial outputs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from meca_cli.console import info
from meca_cli.core import dist
from meca_cli.core.data import ImageSet, load_images
from meca_cli.config import IMAGE_SIZE, EnhanceConfig, RelabelConfig, ScoreConfig, SplitConfig, TrainConfig
from meca_cli.errors import ArtifactError, ConfigError
from meca_cli.store.artifacts import (parse_float, parse_int, read_csv, read_index_list, sha256_file, write_csv,
                                      write_index_list)
from meca_cli.store.manifest import Step

if TYPE_CHECKING:
    from meca_cli.core.train import Subsample

SCORES_COLUMNS = ("index", "path", "label", "kl", "pred", "loss", "conf")
SPLIT_COLUMNS = ("index", "path", "label", "enhanced_pred", "enhanced_conf", "kl", "verdict")
RELABEL_COLUMNS = ("index", "path", "old_label", "new_label")


@dataclass(frozen=True)
class Common:
    """Options every data-reading step shares."""

    device: str = "auto"
    image_size: int = IMAGE_SIZE
    cache_dir: Path | None = None
    force: bool = False
    skip_bad: bool = False  # leave undecodable images out (counted in the summaries) instead of failing


@dataclass
class StepResult:
    name: str
    out: Path
    skipped: bool
    seconds: float
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"step": self.name, "out": str(self.out), "skipped": self.skipped,
                "seconds": round(self.seconds, 2), "summary": self.summary}


_loaded: dict[tuple, ImageSet] = {}


def open_data(data: Path, common: Common, min_classes: int = 2) -> ImageSet:
    """Decode (or reuse) an image folder; memoised so a chain of steps decodes it once."""
    from meca_cli.core.data import scan_folder

    scan = scan_folder(data, min_classes, common.skip_bad)
    key = (scan.fingerprint, str(Path(data).resolve()), common.image_size, common.skip_bad)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_images(Path(data), common.image_size, common.cache_dir, min_classes, common.skip_bad,
                                   scan=scan)
    return _loaded[key]


# The predictions kept: at most this many logits (float32, 256 MiB), so that holding them from
# the split to relabel never outweighs the pass it saves on a very large folder.
PREDICTIONS_KEPT = 2**26
_predicted: dict[tuple, torch.Tensor] = {}


def predictions(checkpoint: Path, dataset: ImageSet, device: torch.device) -> torch.Tensor:
    """A saved model's logits on every sample of the folder, memoised (the last one) like
    open_data: the enhanced model's agreement, the split and the held-suspect guard of one
    `sanitize` read the same model over the same data, and pass over it once. Callers share
    the tensor returned: they derive from it, never write into it."""
    from meca_cli.core.train import predict_logits

    key = (sha256_file(Path(checkpoint)), dataset.scan.fingerprint, dataset.image_size)
    if key not in _predicted:
        net, _ = load_checkpoint(checkpoint, dataset, device)
        logits = predict_logits(net, dataset.images, device)
        _predicted.clear()
        if logits.numel() <= PREDICTIONS_KEPT:
            _predicted[key] = logits
        return logits
    return _predicted[key]


def file_input(path: Path | str | None) -> str:
    if path is None:
        return "none"
    if str(path) == "-":
        return "stdin"
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: not found", hint="run the step that writes it first, or check the path")
    return sha256_file(Path(path))


def _run(step: Step, force: bool, work, device: str = "cpu") -> StepResult:
    """Skip an up-to-date step, else run `work()` -> (outputs, summary) and commit the manifest."""
    started = time.monotonic()
    if not force and step.up_to_date():
        info(f"{step.name}: up to date ({step.out}); use --force to recompute")
        return StepResult(step.name, step.out, True, 0.0, step.summary)
    try:
        step.begin()
    except OSError as exc:
        raise ArtifactError(f"{step.out}: cannot write the step's outputs ({exc.strerror})",
                            hint="choose a writable --out directory") from None
    outputs, summary = work()
    seconds = time.monotonic() - started
    summary = {**summary, "seconds": round(seconds, 2)}
    if dist.is_primary():
        step.complete(outputs, summary, device=device, world_size=dist.world_size())
    dist.barrier()
    return StepResult(step.name, step.out, False, seconds, summary)


def device_of(common: Common) -> torch.device:
    from meca_cli.core.device import resolve_device

    return resolve_device(common.device)


def load_checkpoint(path: Path, dataset: ImageSet, device: torch.device):
    """A checkpoint checked against the folder it will be used on (classes, image size)."""
    from meca_cli.store.checkpoint import check_fits, load_model

    model, meta = load_model(Path(path), device)
    check_fits(meta, dataset, path)
    return model, meta


def recorded_folder(artifact: Path | str | None) -> str | None:
    """The folder fingerprint recorded by the meca step that wrote `artifact`, when the file
    is still exactly what that step wrote (a hand-edited or outside file has none)."""
    from meca_cli.store.manifest import read_manifest

    if artifact is None or str(artifact) == "-" or not Path(artifact).is_file():
        return None
    path = Path(artifact)
    try:
        manifest = read_manifest(path.parent)
    except ArtifactError:
        return None
    if manifest is None:
        return None
    for output in manifest.get("outputs", []):
        if output.get("path") == path.name and output.get("sha256") == sha256_file(path):
            return manifest.get("inputs", {}).get("data")
    return None


def check_same_folder(dataset: ImageSet, *artifacts: Path | str | None) -> None:
    """Refuse per-sample artifacts (index lists, tables) made from another state of the folder:
    their sample indices would point at the wrong images."""
    for artifact in artifacts:
        recorded = recorded_folder(artifact)
        if recorded not in (None, "unknown", dataset.scan.fingerprint):
            raise ArtifactError(f"{artifact}: was made from another state of {dataset.scan.root} "
                                "(files were added, removed or changed since)",
                                hint="re-run the pipeline from its first step on the folder as it is now")


def read_label_table(path: Path, n: int, num_classes: int) -> torch.Tensor:
    """A relabel CSV (index, new_label) as a full label vector override; a sample relabel
    left out of training has the label core.relabel.DROPPED."""
    from meca_cli.core.relabel import DROPPED

    rows = read_csv(path, ("index", "new_label"))
    if len(rows) != n:
        raise ArtifactError(f"{path}: holds {len(rows)} rows, the folder {n} samples",
                            hint="was this table made for another folder?")
    labels = torch.empty(n, dtype=torch.int64)
    for lineno, row in enumerate(rows, 2):
        i = parse_int(row, "index", path, lineno)
        if not 0 <= i < n:
            raise ArtifactError(f"{path}:{lineno}: index {i} out of range for {n} samples")
        labels[i] = parse_int(row, "new_label", path, lineno)
        if not (0 <= labels[i] < num_classes or labels[i] == DROPPED):
            raise ArtifactError(f"{path}:{lineno}: label {int(labels[i])} is not a class index (0..{num_classes - 1})")
    return labels


# ---- train ------------------------------------------------------------------------------------


def _fit_and_save(dataset: ImageSet, out: Path, arch: str, cfg: TrainConfig, device: torch.device,
                  labels: torch.Tensor, indices: torch.Tensor | Subsample | None, init: Path | None, tag: str,
                  step_name: str) -> dict:
    from meca_cli.core.models import build_model
    from meca_cli.core.train import fit
    from meca_cli.store.checkpoint import ModelMeta, save_model

    if init is not None:
        model, meta = load_checkpoint(init, dataset, device)
        arch = meta.arch
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(arch, len(dataset.classes), dataset.image_size)
    history: list[dict] = []
    state = out / "train_state.safetensors"
    model = fit(model, dataset.images, labels, cfg, device, indices=indices, state_path=state, state_tag=tag,
                on_epoch=lambda e, m: history.append({"epoch": e + 1, **m}))
    if dist.is_primary():
        save_model(out / "model.safetensors", model,
                   ModelMeta(arch, dataset.classes, dataset.image_size, step=step_name, config=cfg.to_dict()))
        state.unlink(missing_ok=True)
    last = history[-1] if history else {}
    return {"arch": arch, "samples": len(dataset) if indices is None else len(indices),
            "epochs": last.get("epoch", cfg.epochs),  # the epochs run, with the step floor's extra ones
            "skipped_images": [f"{p}: {r}" for p, r in dataset.scan.skipped],
            "final_loss": last.get("loss"), "final_train_acc": last.get("train_acc")}


def train(data: Path, out: Path, common: Common, cfg: TrainConfig, arch: str = "smallcnn",
          indices: Path | str | None = None, labels: Path | None = None, init: Path | None = None,
          name: str = "train") -> StepResult:
    """Train a model on the folder (optionally a subset, relabelled, or from a checkpoint)."""
    from meca_cli.core.models import ARCHS
    from meca_cli.core.relabel import DROPPED

    if arch not in ARCHS:
        raise ConfigError(f"unknown architecture {arch!r}", hint=f"choose one of {', '.join(ARCHS)}")
    dataset = open_data(data, common)
    check_same_folder(dataset, indices, labels)
    index_list = read_index_list(indices, limit=len(dataset)) if indices is not None else None
    if index_list is not None and not index_list:
        raise ArtifactError(f"{indices}: the index list is empty; nothing to train on")
    step = Step(name, Path(out), {"data": dataset.scan.fingerprint, "indices": sha_of(index_list),
                                  "labels": file_input(labels), "init": file_input(init)},
                {"arch": arch, "image_size": common.image_size, **cfg.to_dict()})
    device = device_of(common)

    def work():
        label_vec = read_label_table(labels, len(dataset), len(dataset.classes)) if labels is not None else dataset.labels
        idx = torch.tensor(index_list) if index_list is not None else None
        if bool((label_vec == DROPPED).any()):  # samples relabel left out
            pool = idx if idx is not None else torch.arange(len(dataset))
            idx = pool[label_vec[pool] != DROPPED]
            if not len(idx):
                raise ArtifactError(f"{labels}: every sample to train on is marked left out (new_label {DROPPED})",
                                    hint="train on the folder's own labels, or re-run 'meca relabel'")
        summary = _fit_and_save(dataset, Path(out), arch, cfg, device, label_vec, idx, init, step.fingerprint, name)
        return ["model.safetensors"], summary

    return _run(step, common.force, work, str(device))


def sha_of(indices: list[int] | None) -> str:
    from meca_cli.store.manifest import fingerprint

    return fingerprint(indices)


# ---- score ------------------------------------------------------------------------------------


def score(data: Path, model: Path, out: Path, common: Common, cfg: ScoreConfig,
          shard: tuple[int, int] | None = None) -> StepResult:
    """Per-sample KL robustness scores -> scores.csv.

    Under torchrun the ranks score contiguous shards and rank 0 writes the joined table.
    With `shard=(i, n)` this process scores only part i of n (1-based) into
    OUT/shards/i-of-n/, for independent jobs that `merge_scores` joins afterwards.
    """
    from meca_cli.core.scoring import kl_scores

    dataset = open_data(data, common)
    inputs = {"data": dataset.scan.fingerprint, "model": file_input(model)}
    params = {"image_size": common.image_size, **cfg.to_dict()}
    if shard is not None:
        part, parts = shard
        out = Path(out) / "shards" / f"{part}-of-{parts}"
        params = {**params, "shard": f"{part}/{parts}"}
    step = Step("score", Path(out), inputs, params)
    device = device_of(common)

    def work():
        net, _ = load_checkpoint(model, dataset, device)
        if shard is not None:
            start, stop = dist.shard_range(len(dataset), shard[0] - 1, shard[1])
            s = kl_scores(net, dataset.images, dataset.labels, cfg, device, start, stop)
        else:
            dist.init(device)
            start, stop = dist.shard_range(len(dataset), dist.rank(), dist.world_size())
            s = dist.gather_scores(kl_scores(net, dataset.images, dataset.labels, cfg, device, start, stop),
                                   len(dataset))
            start, stop = 0, len(dataset)
        if dist.is_primary():
            write_scores(Path(out) / "scores.csv", dataset, s, start)
        return ["scores.csv"], _score_summary(s.kl, s.pred, dataset.labels[start:stop])

    return _run(step, common.force, work, str(device))


def merge_scores(data: Path, model: Path, out: Path, common: Common, cfg: ScoreConfig, parts: int) -> StepResult:
    """Join the n shard tables of OUT/shards/ into OUT/scores.csv, checking that every sample
    appears exactly once. The result is the same step as an unsharded `score`."""
    dataset = open_data(data, common)
    step = Step("score", Path(out), {"data": dataset.scan.fingerprint, "model": file_input(model)},
                {"image_size": common.image_size, **cfg.to_dict()})

    def work():
        lines: dict[int, str] = {}
        for part in range(1, parts + 1):
            shard_dir = Path(out) / "shards" / f"{part}-of-{parts}"
            shard_step = Step("score", shard_dir, step.inputs, {**step.params, "shard": f"{part}/{parts}"})
            if not shard_step.up_to_date():
                raise ArtifactError(f"{shard_dir}: shard {part}/{parts} is missing or stale",
                                    hint=f"run 'meca score ... --shard {part}/{parts}' with the same options first")
            text = (shard_dir / "scores.csv").read_text(encoding="utf-8").splitlines()
            for lineno, line in enumerate(text[1:], 2):
                head = line.split(",", 1)[0]
                if not head.isdigit():
                    raise ArtifactError(f"{shard_dir / 'scores.csv'}:{lineno}: {head!r} is not a sample index",
                                        hint=f"run 'meca score ... --shard {part}/{parts}' again")
                index = int(head)
                if index in lines:
                    raise ArtifactError(f"{shard_dir / 'scores.csv'}:{lineno}: sample {index} is in two shards")
                lines[index] = line
        if sorted(lines) != list(range(len(dataset))):
            raise ArtifactError(f"{out}: the shards cover {len(lines)} of {len(dataset)} samples")
        from meca_cli.store.artifacts import atomic_write_text

        atomic_write_text(Path(out) / "scores.csv",
                          ",".join(SCORES_COLUMNS) + "\n" + "".join(lines[i] + "\n" for i in range(len(dataset))))
        table = read_scores(Path(out) / "scores.csv")
        return ["scores.csv"], _score_summary(table["kl"], table["pred"], dataset.labels)

    return _run(step, common.force, work)


def _score_summary(kl: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor) -> dict:
    return {"samples": len(kl), "kl_median": float(kl.median()), "kl_p05": float(kl.quantile(0.05)),
            "kl_p95": float(kl.quantile(0.95)), "model_agreement": float((pred == labels).float().mean())}


def write_scores(path: Path, dataset: ImageSet, s, start: int = 0) -> None:
    rows = ((start + k, dataset.scan.paths[start + k], int(dataset.labels[start + k]), float(s.kl[k]), int(s.pred[k]),
             float(s.loss[k]), float(s.conf[k])) for k in range(len(s.kl)))
    write_csv(path, SCORES_COLUMNS, rows)


def read_scores(path: Path) -> dict[str, torch.Tensor]:
    rows = read_csv(Path(path), SCORES_COLUMNS)
    n = len(rows)
    kl = torch.empty(n, dtype=torch.float64)
    labels = torch.empty(n, dtype=torch.int64)
    pred = torch.empty(n, dtype=torch.int64)
    seen = torch.zeros(n, dtype=torch.bool)
    for lineno, row in enumerate(rows, 2):
        i = parse_int(row, "index", path, lineno)
        if not 0 <= i < n or seen[i]:
            raise ArtifactError(f"{path}:{lineno}: index {i} is out of range or repeated",
                                hint="regenerate it with 'meca score'")
        seen[i] = True
        kl[i] = parse_float(row, "kl", path, lineno)
        labels[i] = parse_int(row, "label", path, lineno)
        pred[i] = parse_int(row, "pred", path, lineno)
    if torch.isnan(kl).any():
        raise ArtifactError(f"{path}: the kl column holds NaN", hint="regenerate it with 'meca score'")
    return {"kl": kl, "label": labels, "pred": pred}


# ---- partition --------------------------------------------------------------------------------


def partition(scores: Path, out: Path, rho0: float = 0.05, force: bool = False) -> StepResult:
    """Seed clean set: the rho0 fraction with the highest KL score -> clean_seed.idx, rest.idx."""
    from meca_cli.core.partition import complement, top_fraction

    if not 0 < rho0 < 1:
        raise ConfigError(f"--rho0 must be between 0 and 1 (got {rho0})")
    step = Step("partition", Path(out), {"scores": file_input(scores), "data": recorded_folder(scores) or "unknown"},
                {"rho0": rho0})

    def work():
        table = read_scores(Path(scores))
        clean = top_fraction(table["kl"], rho0)
        rest = complement(clean, len(table["kl"]))
        write_index_list(Path(out) / "clean_seed.idx", clean.tolist())
        write_index_list(Path(out) / "rest.idx", rest.tolist())
        return ["clean_seed.idx", "rest.idx"], {"samples": len(table["kl"]), "clean_seed": len(clean),
                                                 "rest": len(rest)}

    return _run(step, force, work)


# ---- enhance ----------------------------------------------------------------------------------


def enhance(data: Path, model: Path, clean_seed: Path, out: Path, common: Common, cfg: EnhanceConfig,
            score_cfg: ScoreConfig) -> StepResult:
    """Backdoor enhancement rounds -> the enhanced model.safetensors and rounds.csv."""
    from meca_cli.core.enhance import enhance as run_rounds, round_files
    from meca_cli.store.checkpoint import ModelMeta, save_model

    dataset = open_data(data, common)
    check_same_folder(dataset, clean_seed)
    step = Step("enhance", Path(out), {"data": dataset.scan.fingerprint, "model": file_input(model),
                                       "clean_seed": file_input(clean_seed)},
                {"image_size": common.image_size, **cfg.to_dict(), "score": score_cfg.to_dict()})
    device = device_of(common)

    def work():
        dist.init(device)  # before any collective: a resumed run re-scores before its first fit
        net, meta = load_checkpoint(model, dataset, device)
        seed_clean = torch.tensor(read_index_list(clean_seed, limit=len(dataset)), dtype=torch.int64)
        if len(seed_clean) == 0:
            raise ArtifactError(f"{clean_seed}: the seed clean set is empty", hint="re-run 'meca partition'")
        state = Path(out) / "enhance_state.safetensors"
        rounds_dir = Path(out) / "rounds"

        def keep_round(round_no: int, scores, clean_set: torch.Tensor) -> None:
            # Each round's scores and unlearned set, written as they come (a resumed run keeps
            # the earlier ones): where a run lost its poison shows up here against ground truth.
            if dist.is_primary():
                rounds_dir.mkdir(exist_ok=True)
                scores_file, clean_file = round_files(round_no)
                write_scores(Path(out) / scores_file, dataset, scores)
                write_index_list(Path(out) / clean_file, clean_set.tolist())

        net, logs = run_rounds(net, dataset.images, dataset.labels, seed_clean, cfg, score_cfg, device,
                               state_path=state, state_tag=step.fingerprint,
                               on_round=lambda r: info(f"enhance: round {r.round}/{cfg.rounds}: unlearned {r.clean_set}, "
                                                       + ("agreement not measured (no re-scoring after it)"
                                                          if r.agreement is None else f"agreement {r.agreement:.3f}")),
                               on_rescore=keep_round)
        if dist.is_primary():
            save_model(Path(out) / "model.safetensors", net,
                       ModelMeta(meta.arch, dataset.classes, dataset.image_size, step="enhance", config=cfg.to_dict()))
        dist.barrier()
        # The last round's agreement, from the saved model as the split will read it (and will
        # reuse: steps.predictions).
        pred = predictions(Path(out) / "model.safetensors", dataset, device).argmax(1)
        logs[-1].agreement = float((pred == dataset.labels).float().mean())
        info(f"enhance: round {logs[-1].round}/{cfg.rounds}: unlearned {logs[-1].clean_set}, "
             f"agreement {logs[-1].agreement:.3f}")
        if dist.is_primary():
            write_csv(Path(out) / "rounds.csv", ("round", "rho", "clean_set", "agreement"),
                      ((r.round, r.rho, r.clean_set, "" if r.agreement is None else r.agreement) for r in logs))
            state.unlink(missing_ok=True)
        kept = [name for t in range(2, cfg.rounds + 1) for name in round_files(t)]
        if dist.is_primary():
            for stale in set(rounds_dir.glob("round*")) - {Path(out) / k for k in kept}:  # a run with more rounds
                stale.unlink()
        return ["model.safetensors", "rounds.csv", *kept], {"rounds": [r.to_dict() for r in logs]}

    return _run(step, common.force, work, str(device))


# ---- split ------------------------------------------------------------------------------------


def split(data: Path, model: Path, out: Path, common: Common, cfg: SplitConfig = SplitConfig(),
          scores: Path | None = None) -> StepResult:
    """Predict every sample with the enhanced model; agreement with the label = suspected."""
    from meca_cli.console import warn
    from meca_cli.core.partition import meets_split_rule, mostly_suspected_classes, split_by_agreement

    dataset = open_data(data, common)
    check_same_folder(dataset, scores)
    step = Step("split", Path(out), {"data": dataset.scan.fingerprint, "model": file_input(model),
                                     "scores": file_input(scores)}, {"image_size": common.image_size, **cfg.to_dict()})
    device = device_of(common)

    def work():
        probs = predictions(Path(model), dataset, device).softmax(1)
        pred = probs.argmax(1)
        conf = probs.gather(1, dataset.labels.view(-1, 1)).squeeze(1)
        suspected = split_by_agreement(probs, dataset.labels, cfg.max_suspected, cfg.rule, cfg.min_confidence)
        agreeing = float((pred == dataset.labels).float().mean())
        matched = float(meets_split_rule(probs, dataset.labels, cfg.rule, cfg.min_confidence).float().mean())
        if matched > cfg.max_suspected:
            rule = "agrees with" if cfg.rule == "agreement" else f"gives p >= {cfg.min_confidence:g} to"
            warn(f"split: the enhanced model {rule} {matched:.0%} of the labels; kept the "
                 f"{cfg.max_suspected:.0%} it is most confident in as suspects (the enhancement did not separate)")
        kl = read_scores(Path(scores))["kl"] if scores is not None else torch.full((len(dataset),), math.nan)
        if len(kl) != len(dataset):
            raise ArtifactError(f"{scores}: {len(kl)} rows for {len(dataset)} samples", hint="score this folder")
        write_index_list(Path(out) / "clean.idx", (~suspected).nonzero().squeeze(1).tolist())
        write_index_list(Path(out) / "suspected.idx", suspected.nonzero().squeeze(1).tolist())
        write_csv(Path(out) / "split.csv", SPLIT_COLUMNS,
                  ((i, dataset.scan.paths[i], int(dataset.labels[i]), int(pred[i]), float(conf[i]), float(kl[i]),
                    "suspected" if suspected[i] else "clean") for i in range(len(dataset))))
        per_class = torch.bincount(dataset.labels[suspected], minlength=len(dataset.classes))
        lost = {dataset.classes[c]: share for c, share in
                mostly_suspected_classes(suspected, dataset.labels, len(dataset.classes)).items()}
        for name, share in lost.items():
            warn(f"split: {share:.0%} of class {name!r} is suspected; the clean model will hardly see it (relabel "
                 f"--keep-lost-class gives it back the suspects that look like it; check the final model on {name!r})")
        return ["clean.idx", "suspected.idx", "split.csv"], {
            "samples": len(dataset), "suspected": int(suspected.sum()), "clean": int((~suspected).sum()),
            "agreement": agreeing,
            "suspected_per_class": {c: int(k) for c, k in zip(dataset.classes, per_class)},
            "mostly_suspected_classes": lost}

    return _run(step, common.force, work, str(device))


# ---- relabel ----------------------------------------------------------------------------------


def relabel(data: Path, clean_model: Path, suspected: Path, out: Path, common: Common,
            cfg: RelabelConfig, enhanced_model: Path | None = None) -> StepResult:
    """Label the suspects with the clean model's prediction, then fine-tune it on everything.

    With the enhanced model (and `cfg.drop_held`), suspects it still holds at near-certainty
    under their given label are left out instead (core.relabel.held_suspects)."""
    from meca_cli.core.relabel import DROPPED, finetune_pool, held_suspects
    from meca_cli.core.relabel import relabel as relabel_labels

    dataset = open_data(data, common)
    check_same_folder(dataset, suspected)
    drop = cfg.drop_held and enhanced_model is not None
    if cfg.drop_held and enhanced_model is None:
        info("relabel: no --enhanced-model given, so no suspect is left out (--drop-held needs it)")
    step = Step("relabel", Path(out), {"data": dataset.scan.fingerprint, "model": file_input(clean_model),
                                       "suspected": file_input(suspected),
                                       "enhanced_model": file_input(enhanced_model if drop else None)},
                {"image_size": common.image_size, **cfg.to_dict()})
    device = device_of(common)

    def work():
        net, meta = load_checkpoint(clean_model, dataset, device)
        sus = torch.tensor(read_index_list(suspected, limit=len(dataset)), dtype=torch.int64)
        new, kept = relabel_labels(net, dataset.images, dataset.labels, sus, device, len(dataset.classes),
                                   cfg.keep_lost_class, cfg.neighbours, cfg.lost_class_share,
                                   cfg.lost_class_margin, cfg.lost_class_leave_out, cfg.relabel_confidence)
        doubt = new == DROPPED
        held = torch.zeros(len(dataset), dtype=torch.bool)
        if drop and len(sus):
            probs = predictions(Path(enhanced_model), dataset, device).softmax(1)
            held = held_suspects(new, dataset.labels, sus, probs, cfg.held_confidence)
            new[held] = DROPPED
        write_csv(Path(out) / "relabeled.csv", RELABEL_COLUMNS,
                  ((i, dataset.scan.paths[i], int(dataset.labels[i]), int(new[i])) for i in range(len(dataset))))
        left_out = new == DROPPED
        summary = {"relabeled": len(sus), "changed": int(((new != dataset.labels) & ~left_out).sum()),
                   "kept_label": int((kept & ~held).sum()), "dropped": int(left_out.sum())}
        if bool(kept.any()):
            info(f"relabel: {int(kept.sum())} suspects of a class flagged almost whole keep their label "
                 "(nearer the other suspects than the clean split)")
        if bool(doubt.any()):
            reasons = ([f"the clean model gives another label at under {cfg.relabel_confidence:g}"]
                       if cfg.relabel_confidence > 0 else [])
            if cfg.lost_class_leave_out < 1:
                reasons.append("a lost class's suspects too near the clean split to keep their label, "
                               "too near the suspects to be relabelled")
            info(f"relabel: {int(doubt.sum())} suspects left out of the final training ({'; or '.join(reasons)})")
        if bool(held.any()):
            info(f"relabel: {int(held.sum())} suspects left out of the final training: they keep their label while "
                 f"the enhanced model still gives it >= {cfg.held_confidence:g} (new_label {DROPPED})")
        if cfg.finetune_epochs > 0:
            ft = TrainConfig(epochs=cfg.finetune_epochs, min_steps=0, batch_size=cfg.batch_size, lr=cfg.finetune_lr,
                             seed=cfg.seed + 17)
            summary["finetune"] = _fit_and_save(dataset, Path(out), meta.arch, ft, device, new,
                                                finetune_pool(new, sus, cfg.finetune_clean_share),
                                                Path(clean_model), step.fingerprint, "relabel")
        else:
            from meca_cli.store.checkpoint import save_model

            save_model(Path(out) / "model.safetensors", net, meta)
        return ["relabeled.csv", "model.safetensors"], summary

    return _run(step, common.force, work, str(device))
