"""Set logic on scores and predictions: seed clean set, growing clean sets, the split."""

from __future__ import annotations

import torch

from meca_cli.config import RelabelConfig


def top_fraction(kl: torch.Tensor, fraction: float) -> torch.Tensor:
    """Sorted indices of the `fraction` of samples with the highest score (surely clean).

    Ties break by index (stable sort), so the result is a deterministic function of the scores.
    """
    count = max(1, min(len(kl), round(fraction * len(kl))))
    order = torch.sort(-kl, stable=True).indices
    return order[:count].sort().values


def complement(indices: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[indices] = False
    return keep.nonzero().squeeze(1)


def rho_schedule(rho0: float, rho_max: float, rounds: int) -> list[float]:
    """Linearly growing clean-set fraction, rho0 in the first round to rho_max in the last."""
    if rounds <= 1:
        return [rho0]
    return [rho0 + (rho_max - rho0) * t / (rounds - 1) for t in range(rounds)]


def meets_split_rule(enhanced_probs: torch.Tensor, labels: torch.Tensor, rule: str = "agreement",
                     min_confidence: float = 0.5) -> torch.Tensor:
    """The split rule before any cap: argmax == label ("agreement") or p(label) >=
    `min_confidence` ("confidence")."""
    if rule == "agreement":
        return enhanced_probs.argmax(1) == labels
    return enhanced_probs.gather(1, labels.view(-1, 1)).squeeze(1) >= min_confidence


def split_by_agreement(enhanced_probs: torch.Tensor, labels: torch.Tensor, max_suspected: float = 1.0,
                       rule: str = "agreement", min_confidence: float = 0.5) -> torch.Tensor:
    """Suspected mask: the backdoor-enhanced model still agrees with the given label.

    Enhancement unlearns the clean task but keeps the backdoor, so agreement survives
    mostly on poisoned samples. When more than `max_suspected` of the set agrees, the
    enhancement did not separate; the suspects kept are then those with the highest
    probability of their given label. With rule "confidence", a sample is suspected when
    that probability reaches `min_confidence` instead.
    """
    conf = enhanced_probs.gather(1, labels.view(-1, 1)).squeeze(1)
    suspected = meets_split_rule(enhanced_probs, labels, rule, min_confidence)
    cap = int(max_suspected * len(labels))
    if int(suspected.sum()) > cap:
        conf = torch.where(suspected, conf, torch.full_like(conf, -1.0))
        keep = torch.sort(-conf, stable=True).indices[:cap]
        suspected = torch.zeros_like(suspected)
        suspected[keep] = True
    return suspected


def mostly_suspected_classes(suspected: torch.Tensor, labels: torch.Tensor, num_classes: int,
                             rate: float = RelabelConfig.lost_class_share) -> dict[int, float]:
    """Classes whose suspected share reaches `rate`, with that share.

    The clean model is trained without the suspects, so it hardly sees such a class;
    relabelling gives the class back the suspects that look like it (core.relabel).
    """
    flagged = torch.bincount(labels[suspected], minlength=num_classes).float()
    total = torch.bincount(labels, minlength=num_classes).float()
    share = flagged / total.clamp_min(1)
    return {c: float(share[c]) for c in range(num_classes) if total[c] > 0 and share[c] >= rate}
