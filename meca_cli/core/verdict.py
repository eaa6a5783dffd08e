"""The dataset-level verdict: is this folder poisoned at all?

It reads the step-1 model's scores (step 2), not the enhanced model: the enhancement
collapses onto one class on clean data too, so where the suspects sit cannot tell clean
from poisoned (measured: eleven false alarms in eleven clean runs; docs/measurements.md).
A backdoor leaves one of two marks on the model that trained on it, each measured so that
a class that is merely easy or hard does not show it:

- **robust**: poison the model has fitted is its most robust feature, so its class crowds
  the extreme low end of the KL score. The statistic is the odds of a class among the 1 %
  lowest scores over its odds among the 25 % lowest: an easy class crowds both alike, a
  poisoned one the extreme far more. Odds, not shares: at a high poison rate the poison
  fills most of the 25 % too, and a ratio of shares, capped by that share, would fall
  (measured: 1.31 at 20 % BadNet). On a small folder a few images make high odds by
  chance, so the class's count in the tail must also lie `robust_min_z` binomial standard
  deviations above what its share of the 25 % predicts.
- **spread**: dirty-label poison the model has not fitted (a weak training trigger) is an
  image of some other class labelled with the target, which the model calls by its own
  class: the target's misclassified samples spread over all the other classes alike. A
  class's own mistakes go to the few classes that look like it (cat to dog, automobile to
  truck). The statistic is the effective number of classes a class's errors go to (the
  exponential of their entropy) over the number of other classes.

The verdict is "poisoned" when either statistic reaches its threshold; the class named is
the one where it does. Both need a model that has not fitted everything: where the step-1
model agrees with nearly every label (a small folder trained for many steps) its most robust
images are one class's easiest, poison or not, and its errors are too few to spread, so the
verdict is "undetermined" there, whatever the statistics say. When the split is given, the
suspects in the named class beyond the other classes' median rate estimate the poison
fraction (the `--fail-over` gate's number).
"""

from __future__ import annotations

import math

import torch

from meca_cli.config import VerdictConfig


def robust_crowding(kl: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    cfg: VerdictConfig = VerdictConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: the odds of its images among the `robust_tail` lowest scores over their
    odds among the `robust_reference` lowest (with half a count added to each cell, so an
    all-poison tail stays finite), and how many standard deviations its count in the tail
    lies above what its share of the reference predicts (a binomial z: on a small folder
    the odds can be high by chance)."""
    order = torch.argsort(kl, stable=True)

    def counts(fraction: float) -> tuple[torch.Tensor, int]:
        k = max(1, round(fraction * len(kl)))
        return torch.bincount(labels[order[:k]], minlength=num_classes).double(), k

    (tail, k), (reference, k_ref) = counts(cfg.robust_tail), counts(cfg.robust_reference)
    odds = lambda n, total: (n + 0.5) / (total - n + 0.5)  # noqa: E731
    ratio = odds(tail, k) / odds(reference, k_ref)
    share = reference / k_ref
    expected = k * share
    z = (tail - expected) / (expected * (1 - share)).clamp_min(1e-12).sqrt()
    return ratio, z


def error_spread(labels: torch.Tensor, pred: torch.Tensor, num_classes: int,
                 cfg: VerdictConfig = VerdictConfig()) -> torch.Tensor:
    """Per class: over how many of the other classes its misclassified samples spread, as
    the effective number (the exponential of the entropy of their predicted classes) over
    the number of other classes, 0..1; NaN for a class with fewer than `min_errors` errors."""
    wrong = pred != labels
    flows = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    flows.index_put_((labels[wrong], pred[wrong]), torch.ones(int(wrong.sum()), dtype=torch.float64), accumulate=True)
    errors = flows.sum(1)
    p = flows / errors.clamp_min(1).unsqueeze(1)
    effective = torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum(1))
    return torch.where(errors >= cfg.min_errors, effective / max(1, num_classes - 1),
                       torch.full_like(errors, float("nan")))


def dataset_verdict(labels: torch.Tensor, kl: torch.Tensor, pred: torch.Tensor, num_classes: int,
                    cfg: VerdictConfig = VerdictConfig(), suspected: torch.Tensor | None = None) -> dict:
    """The verdict from the step-1 scores (kl and prediction per sample, by index); with the
    split's `suspected` mask, also the estimated poison fraction."""
    crowding, significance = robust_crowding(kl, labels, num_classes, cfg)
    robust_class = int(crowding.argmax())
    robust = float(crowding[robust_class])  # 1: a class as common at the extreme as in the wider end
    robust_z = float(significance[robust_class])
    spread_all = error_spread(labels, pred, num_classes, cfg)
    known = ~torch.isnan(spread_all)
    spread_class = int(torch.where(known, spread_all, -1.0).argmax()) if known.any() else None
    spread = None if spread_class is None else float(spread_all[spread_class])
    # Each statistic at or over its threshold, by how far over; the class of the farthest.
    over = lambda value, threshold: value / threshold if threshold > 0 else math.inf  # noqa: E731
    fired = []
    if robust >= cfg.robust_ratio and robust_z >= cfg.robust_min_z:
        fired.append((over(robust, cfg.robust_ratio), robust_class, "robust"))
    if spread is not None and spread >= cfg.spread_ratio:
        fired.append((over(spread, cfg.spread_ratio), spread_class, "spread"))
    _, named, reason = max(fired, key=lambda f: f[0]) if fired else (None, None, None)
    verdict = "poisoned" if fired else "clean"
    fit = float((pred == labels).float().mean())
    if fit > cfg.max_fit:  # nothing to read from a model that fits everything (module doc)
        verdict, named, reason = "undetermined", None, "fit"
    out = {
        "verdict": verdict,
        "reason": reason,
        "suspected_class": named,
        "robust_crowding": round(robust, 4),
        "robust_crowding_class": robust_class,
        "robust_crowding_z": round(robust_z, 2),
        "robust_threshold": cfg.robust_ratio,
        "error_spread": None if spread is None else round(spread, 4),
        "error_spread_class": spread_class,
        "spread_threshold": cfg.spread_ratio,
        "fit": round(fit, 4),  # the step-1 model's agreement with the labels
        "max_fit": cfg.max_fit,
    }
    if suspected is not None:
        counts = torch.bincount(labels, minlength=num_classes).double().clamp_min(1)
        rates = torch.bincount(labels[suspected], minlength=num_classes).double() / counts
        out["suspected_fraction"] = round(float(suspected.float().mean()), 4)
        excess = 0.0
        if named is not None:
            baseline = float(torch.cat([rates[:named], rates[named + 1:]]).median())
            excess = max(0.0, (float(rates[named]) - baseline) * float(counts[named]))
        # Suspects in the named class beyond what the other classes show: the poison estimate.
        out["estimated_poison_fraction"] = round(excess / max(1, len(labels)), 4)
    return out
