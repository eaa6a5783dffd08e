"""Evaluating a model (accuracy, attack success rate) and a verdict table (detection)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from meca_cli.core.metrics import accuracy, attack_success_rate, auroc, detection
from meca_cli.errors import ArtifactError
from meca_cli.store.artifacts import parse_float, parse_int, read_csv

ATTACK_CARD = "meca-attack.json"  # written by `meca poison` at the root of a poisoned or triggered folder


def read_attack_card(folder: Path) -> dict | None:
    path = Path(folder) / ATTACK_CARD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ArtifactError(f"{path}: unreadable attack card", hint="re-create the folder with 'meca poison'") from None


def model_metrics(model, meta, clean, triggered, target: int | None, device) -> dict:
    """Clean accuracy (overall, per class, and on the target class) on `clean`; ASR on
    `triggered` (every image in it is counted: `meca poison --test` writes only the ASR
    population), when given."""
    from meca_cli.core.train import predict_logits
    from meca_cli.store.checkpoint import check_fits

    out: dict = {}
    if clean is not None:
        check_fits(meta, clean, "the model's checkpoint")
        pred = predict_logits(model, clean.images, device).argmax(1)
        out["accuracy"] = accuracy(pred, clean.labels)
        out["test_samples"] = len(clean)
        per_class = {name: accuracy(pred[clean.labels == c], clean.labels[clean.labels == c])
                     for c, name in enumerate(clean.classes) if bool((clean.labels == c).any())}
        out["class_accuracy"] = per_class
        if target is not None and 0 <= target < len(clean.classes):
            # A model that never predicts the target has an ASR of 0 by construction; the
            # accuracy on the target's own clean images tells that apart from real removal.
            out["target_accuracy"] = per_class.get(clean.classes[target])
            # The other classes' clean images called the target: what an ASR is with no trigger at all.
            others = clean.labels != target
            if bool(others.any()):
                out["into_target"] = float((pred[others] == target).float().mean())
    if triggered is not None:
        if target is None:
            raise ArtifactError("the target class of the triggered folder is unknown",
                                hint=f"pass --target, or use a folder written by 'meca poison --test' ({ATTACK_CARD})")
        unknown = set(triggered.classes) - set(meta.classes)
        if unknown:
            raise ArtifactError(f"{triggered.scan.root}: classes {sorted(unknown)} are not the model's",
                                hint="evaluate on a folder triggered from the same data set")
        pred = predict_logits(model, triggered.images, device).argmax(1)
        out["asr"] = attack_success_rate(pred, target, torch.ones(len(pred), dtype=torch.bool))
        out["triggered_samples"] = len(triggered)
        out["target"] = target
    return out


def read_ground_truth(path: Path) -> dict[int, str]:
    """index -> role (clean / poison / cover) from a `meca poison` ground-truth CSV."""
    rows = read_csv(Path(path), ("index", "role"))
    roles = {}
    for lineno, row in enumerate(rows, 2):
        role = row["role"]
        if role not in ("clean", "poison", "cover"):
            raise ArtifactError(f"{path}:{lineno}: unknown role {role!r}", hint="roles are clean, poison, cover")
        roles[parse_int(row, "index", path, lineno)] = role
    return roles


def detection_metrics(verdicts: Path, ground_truth: Path) -> dict:
    """Recall/FPR/precision/F1 of the suspected verdicts against poison ground truth (cover
    samples count as negatives and are reported apart), and AUROC of the KL score."""
    rows = read_csv(Path(verdicts), ("index", "kl", "verdict"))
    roles = read_ground_truth(ground_truth)
    if len(roles) != len(rows):
        raise ArtifactError(f"{ground_truth}: {len(roles)} rows, {verdicts}: {len(rows)}",
                            hint="compare a run with the ground truth of the same folder")
    n = len(rows)
    if set(roles) != set(range(n)):
        raise ArtifactError(f"{ground_truth}: its indices are not 0..{n - 1}", hint="re-create it with 'meca poison'")
    flagged = torch.zeros(n, dtype=torch.bool)
    kl = torch.zeros(n, dtype=torch.float64)
    for i, lineno, row in _indexed_rows(rows, verdicts, n, ground_truth):
        flagged[i] = row["verdict"] == "suspected"
        kl[i] = parse_float(row, "kl", verdicts, lineno)
    role = [roles[i] for i in range(n)]
    poison = torch.tensor([r == "poison" for r in role])
    cover = torch.tensor([r == "cover" for r in role])
    out = {"samples": n, "poison": int(poison.sum()), "cover": int(cover.sum()), **detection(flagged, poison)}
    # Low KL = suspicious, so rank by -kl.
    out["auroc"] = auroc(-kl, poison) if not torch.isnan(kl).any() else float("nan")
    out["cover_flagged"] = int((flagged & cover).sum())
    return out


def _indexed_rows(rows: list[dict[str, str]], path: Path, n: int, ground_truth: Path):
    """(index, line number, row) of a per-sample CSV whose indices must be samples 0..n-1 of
    the ground truth."""
    for lineno, row in enumerate(rows, 2):
        i = parse_int(row, "index", path, lineno)
        if not 0 <= i < n:
            raise ArtifactError(f"{path}:{lineno}: sample {i} is not in {ground_truth}",
                                hint="compare a run with the ground truth of the same folder")
        yield i, lineno, row


def round_metrics(run: Path, ground_truth: Path) -> list[dict]:
    """Per enhancement round of a sanitize run: the AUROC of the score that chose the round's
    unlearned set (round 1: step 2's score of the poisoned model; later rounds: the
    enhancement's re-scoring, enhance/rounds/) and how much of the poison that set holds.
    Poison unlearned is backdoor erased and goes unflagged at the split, so where a run loses
    its recall shows here. Rounds whose files are absent (runs made before they were kept)
    are left out."""
    from meca_cli.core.enhance import round_files
    from meca_cli.store.artifacts import read_index_list

    roles = read_ground_truth(ground_truth)
    poison = torch.tensor([roles[i] == "poison" for i in range(len(roles))])
    sources = [(1, run / "score" / "scores.csv", run / "partition" / "clean_seed.idx")]
    round_no = 2
    while all((run / "enhance" / name).is_file() for name in round_files(round_no)):
        sources.append((round_no, *(run / "enhance" / name for name in round_files(round_no))))
        round_no += 1
    out = []
    for round_no, scores_path, clean_path in sources:
        if not (scores_path.is_file() and clean_path.is_file()):
            continue
        kl = torch.full((len(poison),), float("nan"), dtype=torch.float64)
        conf = kl.clone()
        for i, lineno, row in _indexed_rows(read_csv(scores_path, ("index", "kl")), scores_path, len(poison),
                                            ground_truth):
            kl[i] = parse_float(row, "kl", scores_path, lineno)
            if row.get("conf"):
                conf[i] = parse_float(row, "conf", scores_path, lineno)
        unlearned = torch.zeros(len(poison), dtype=torch.bool)
        unlearned[torch.tensor(read_index_list(clean_path, limit=len(poison)), dtype=torch.int64)] = True
        # Beside the score: how well the same model's confidence in the given label ranks the
        # poison (high = suspicious). Below 0.5 the poison is not even fitted: nothing robust to find.
        conf_auroc = auroc(conf, poison) if not torch.isnan(conf).any() else float("nan")
        out.append({"round": round_no, "auroc": auroc(-kl, poison), "conf_auroc": conf_auroc,
                    "unlearned": int(unlearned.sum()),
                    "poison_unlearned": int((unlearned & poison).sum()),
                    "poison_unlearned_share": float((unlearned & poison).sum()) / max(1, int(poison.sum()))})
    return out
