"""Figures a defence is judged by: accuracy, attack success rate, detection quality."""

from __future__ import annotations

import torch


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if len(labels) else float("nan")


def attack_success_rate(triggered_pred: torch.Tensor, target: int, counted: torch.Tensor) -> float:
    """Fraction of counted triggered inputs classified as the target."""
    if int(counted.sum()) == 0:
        return float("nan")
    return float((triggered_pred[counted] == target).float().mean())


def auroc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` ranking positives above negatives (ties count half)."""
    pos, neg = int(positives.sum()), int((~positives).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = torch.argsort(scores.double(), stable=True)
    sorted_scores = scores.double()[order]
    ranks = torch.empty(len(scores), dtype=torch.float64)
    # Average ranks over ties (1-based), as the Mann-Whitney U statistic needs.
    unique, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = ranks[positives].sum() - pos * (pos + 1) / 2
    return float(u / (pos * neg))


def detection(flagged: torch.Tensor, positives: torch.Tensor) -> dict[str, float]:
    """Recall (TPR), false-positive rate, precision and F1 of a flagged mask against ground truth."""
    tp = int((flagged & positives).sum())
    fp = int((flagged & ~positives).sum())
    fn = int((~flagged & positives).sum())
    tn = int((~flagged & ~positives).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"recall": recall, "fpr": fp / (fp + tn) if fp + tn else float("nan"), "precision": precision,
            "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
