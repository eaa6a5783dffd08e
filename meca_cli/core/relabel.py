"""Relabelling: the suspected samples get the clean model's prediction as their label.

One exception. When the split flags (almost) a whole class, the clean model never saw
that class and calls its images by the nearest class it knows, so the final model would
lose the class. Among such a class's suspects, a poison (say, an airplane carrying a
trigger) still has clean neighbours of its true class in the clean model's feature space,
while an image that really belongs to the class has none of its kind: its nearest
neighbours are other suspects. Those keep their given label.

That exception cannot tell a clean-label poison (a real image of the class carrying a
trigger) from the class's own images, and neither can the clean model, which calls both by
the class. What can is the enhanced model: after unlearning the clean set, only a shortcut
still holds an image at near-certainty. A suspect that would keep its given label while the
enhanced model gives that label at least `held_confidence` is left out of the final
training set (`held_suspects`). That needs contrast within the class: where the enhanced
model collapsed onto a class it can hold all of it, its own images included (the digits
demo: every kept `digit1`). A class whose label-keeping suspects are held almost all
(more than `MAX_HELD_SHARE`) gives no such contrast, and none of it is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meca_cli.config import RelabelConfig
from meca_cli.core.partition import mostly_suspected_classes
from meca_cli.core.train import predict_logits, predict_with_features

_QUERY_CHUNK = 1024  # rows of the distance matrix held at once
DROPPED = -1  # new label of a suspect left out of the final training set
# Above this share of a class's label-keeping suspects held, holding tells nothing (module
# doc). Measured shares: 0-19 % on clean and poisoned CIFAR-10 runs, 63-83 % where poison is
# most of what a class keeps (PhysicalBA, SIG), 100 % on the collapsed digits class.
MAX_HELD_SHARE = 0.9


def mean_knn_distance(queries: torch.Tensor, pool: torch.Tensor, k: int, skip_self: bool = False) -> torch.Tensor:
    """Mean distance from each query to its k nearest pool rows (the query itself excluded
    when the queries are in the pool)."""
    k = min(k, len(pool) - int(skip_self))
    if k <= 0:
        return torch.full((len(queries),), float("inf"))
    out = []
    for lo in range(0, len(queries), _QUERY_CHUNK):
        nearest = torch.cdist(queries[lo:lo + _QUERY_CHUNK], pool).topk(k + int(skip_self), largest=False).values
        out.append(nearest[:, int(skip_self):].mean(1))
    return torch.cat(out)


def own_class_suspects(features: torch.Tensor, suspected: torch.Tensor, labels: torch.Tensor,
                       classes: list[int], k: int) -> torch.Tensor:
    """Boolean mask over all samples: suspects labelled with one of `classes` that are nearer
    to the other suspects than to the clean split (features of every sample, row-aligned)."""
    keep = torch.zeros(len(labels), dtype=torch.bool)
    candidates = suspected & torch.isin(labels, torch.tensor(classes, dtype=torch.int64))
    if not bool(candidates.any()) or not bool((~suspected).any()):
        return keep
    to_clean = mean_knn_distance(features[candidates], features[~suspected], k)
    to_suspects = mean_knn_distance(features[candidates], features[suspected], k, skip_self=True)
    keep[candidates.nonzero().squeeze(1)] = to_suspects < to_clean
    return keep


def relabel(clean_model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suspected: torch.Tensor,
            device: torch.device, num_classes: int | None = None, keep_lost_class: bool = True,
            neighbours: int = 10, lost_share: float = RelabelConfig.lost_class_share,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The full label vector (given labels for the clean split, predictions for the
    suspects) and the mask of suspects that keep their given label (see the module doc)."""
    new = labels.clone()
    kept = torch.zeros(len(labels), dtype=torch.bool)
    if not len(suspected):
        return new, kept
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[suspected] = True
    lost = (list(mostly_suspected_classes(mask, labels, num_classes or int(labels.max()) + 1, lost_share))
            if keep_lost_class else [])
    if not lost:
        new[suspected] = predict_logits(clean_model, images, device, indices=suspected).argmax(1)
        return new, kept
    # The rule needs every sample's features; the suspects' predictions come from the same pass.
    logits, features = predict_with_features(clean_model, images, device)
    new[suspected] = logits[suspected].argmax(1)
    kept = own_class_suspects(F.normalize(features, dim=1), mask, labels, lost, neighbours)
    new[kept] = labels[kept]
    return new, kept


def held_suspects(new: torch.Tensor, labels: torch.Tensor, suspected: torch.Tensor, enhanced_conf: torch.Tensor,
                  held_confidence: float) -> torch.Tensor:
    """Boolean mask over all samples: suspects whose new label is their given label while the
    enhanced model still gives that label at least `held_confidence` (see the module doc).
    `enhanced_conf` holds each suspect's probability of its given label, in `suspected` order."""
    keeping = torch.zeros(len(labels), dtype=torch.bool)
    held = torch.zeros(len(labels), dtype=torch.bool)
    suspected = torch.as_tensor(suspected, dtype=torch.int64)
    keeping[suspected] = new[suspected] == labels[suspected]
    held[suspected] = keeping[suspected] & (enhanced_conf >= held_confidence)
    classes = int(labels.max()) + 1 if len(labels) else 0
    per_class = torch.bincount(labels[held], minlength=classes)
    saturated = per_class > MAX_HELD_SHARE * torch.bincount(labels[keeping], minlength=classes)
    return held & ~saturated[labels]
