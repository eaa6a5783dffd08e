"""Relabelling: the suspected samples get the clean model's prediction as their label.

One exception. When the split flags (almost) a whole class, the clean model never saw
that class and calls its images by the nearest class it knows, so the final model would
lose the class. Among such a class's suspects, a poison (say, an airplane carrying a
trigger) still has clean neighbours of its true class in the clean model's feature space,
while an image that really belongs to the class has none of its kind: its nearest
neighbours are other suspects. Those keep their given label (`lost_class_margin`: how much
nearer; with `lost_class_leave_out` under 1, the ones only a little nearer are left out of
the final training instead, neither kept nor relabelled).

That exception cannot tell a clean-label poison (a real image of the class carrying a
trigger) from the class's own images, and neither can the clean model, which calls both by
the class. What can is the enhanced model: after unlearning the clean set, only a shortcut
still holds an image at near-certainty. A suspect that would keep its given label while the
enhanced model gives that label at least `held_confidence` is left out of the final
training set (`held_suspects`). Unless the enhanced model collapsed onto the class: then it
holds the class's own images too (the digits demo's `digit1`), and holding tells nothing.
A collapse shows outside the class, a trigger does not: the collapsed model also gives
the class at that confidence to images labelled with other classes. A class held so for
more than `MAX_FOREIGN_HELD` of the other classes' images keeps all its suspects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meca_cli.config import RelabelConfig
from meca_cli.core.partition import mostly_suspected_classes
from meca_cli.core.train import Subsample, predict_logits, predict_with_features

# Entries of the distance matrix held at once (64 MiB of float32), whatever the pool's size:
# a fixed count of query rows would grow with the data set (1,024 rows x 1M images: 4 GiB).
_DISTANCE_BLOCK = 1 << 24
DROPPED = -1  # new label of a suspect left out of the final training set
# Above this share of the images labelled with other classes held as a class, the enhanced
# model collapsed onto it (module doc). Measured (benchmarks/analysis/held_collapse.py): 13 %
# on the digits demo's collapsed class; at most 0.22 % on CIFAR-10 runs, where the held
# suspects were SIG and PhysicalBA poison or, on the clean control, 32 automobiles.
MAX_FOREIGN_HELD = 0.01


def mean_knn_distance(queries: torch.Tensor, pool: torch.Tensor, k: int, skip_self: bool = False) -> torch.Tensor:
    """Mean distance from each query to its k nearest pool rows (the query itself excluded
    when the queries are in the pool)."""
    k = min(k, len(pool) - int(skip_self))
    if k <= 0:
        return torch.full((len(queries),), float("inf"))
    rows = max(1, _DISTANCE_BLOCK // max(1, len(pool)))
    out = []
    for lo in range(0, len(queries), rows):
        nearest = torch.cdist(queries[lo:lo + rows], pool).topk(k + int(skip_self), largest=False).values
        out.append(nearest[:, int(skip_self):].mean(1))
    return torch.cat(out)


def own_class_suspects(features: torch.Tensor, suspected: torch.Tensor, labels: torch.Tensor,
                       classes: list[int], k: int, margin: float = RelabelConfig.lost_class_margin,
                       leave_out: float = RelabelConfig.lost_class_leave_out) -> tuple[torch.Tensor, torch.Tensor]:
    """Two boolean masks over all samples, for the suspects labelled with one of `classes`
    (features of every sample, row-aligned). Kept: their distance to the other suspects is
    under `leave_out` x `margin` times their distance to the clean split. In doubt: not kept,
    but under `margin` times it (none when leave_out is 1). Margin 1: nearer the suspects."""
    keep = torch.zeros(len(labels), dtype=torch.bool)
    doubt = torch.zeros(len(labels), dtype=torch.bool)
    candidates = suspected & torch.isin(labels, torch.tensor(classes, dtype=torch.int64))
    if not bool(candidates.any()) or not bool((~suspected).any()):
        return keep, doubt
    to_clean = mean_knn_distance(features[candidates], features[~suspected], k)
    to_suspects = mean_knn_distance(features[candidates], features[suspected], k, skip_self=True)
    rows = candidates.nonzero().squeeze(1)
    keep[rows] = to_suspects < leave_out * margin * to_clean
    doubt[rows] = ~keep[rows] & (to_suspects < margin * to_clean)
    return keep, doubt


def relabel(clean_model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suspected: torch.Tensor,
            device: torch.device, num_classes: int | None = None, keep_lost_class: bool = True,
            neighbours: int = 10, lost_share: float = RelabelConfig.lost_class_share,
            margin: float = RelabelConfig.lost_class_margin,
            leave_out: float = RelabelConfig.lost_class_leave_out,
            min_confidence: float = RelabelConfig.relabel_confidence) -> tuple[torch.Tensor, torch.Tensor]:
    """The full label vector (given labels for the clean split, predictions for the
    suspects, DROPPED for a lost class's suspects in doubt and for a suspect whose predicted
    label differs from its given one at under `min_confidence`) and the mask of suspects
    that keep their given label (see the module doc)."""
    new = labels.clone()
    kept = torch.zeros(len(labels), dtype=torch.bool)
    if not len(suspected):
        return new, kept
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[suspected] = True
    lost = (list(mostly_suspected_classes(mask, labels, num_classes or int(labels.max()) + 1, lost_share))
            if keep_lost_class else [])
    if not lost:
        new[suspected] = confident_prediction(predict_logits(clean_model, images, device, indices=suspected),
                                              labels[suspected], min_confidence)
        return new, kept
    # The rule needs every sample's features; the suspects' predictions come from the same pass.
    logits, features = predict_with_features(clean_model, images, device)
    new[suspected] = confident_prediction(logits[suspected], labels[suspected], min_confidence)
    kept, doubt = own_class_suspects(F.normalize(features, dim=1), mask, labels, lost, neighbours, margin, leave_out)
    new[kept] = labels[kept]
    new[doubt] = DROPPED
    return new, kept


def confident_prediction(logits: torch.Tensor, given: torch.Tensor, min_confidence: float) -> torch.Tensor:
    """The predicted labels, DROPPED where the prediction differs from the given label at a
    probability under `min_confidence`."""
    confidence, predicted = logits.softmax(1).max(1)
    unsure = (predicted != given) & (confidence < min_confidence)
    return torch.where(unsure, torch.full_like(predicted, DROPPED), predicted)


def held_suspects(new: torch.Tensor, labels: torch.Tensor, suspected: torch.Tensor, enhanced_probs: torch.Tensor,
                  held_confidence: float) -> torch.Tensor:
    """Boolean mask over all samples: suspects whose new label is their given label while the
    enhanced model still gives that label at least `held_confidence`, outside the classes it
    collapsed onto (see the module doc). `enhanced_probs`: its class probabilities, every sample."""
    suspected = torch.as_tensor(suspected, dtype=torch.int64)
    keeping = torch.zeros(len(labels), dtype=torch.bool)
    keeping[suspected] = new[suspected] == labels[suspected]
    confident = enhanced_probs >= held_confidence  # samples x classes
    held = keeping & confident.gather(1, labels.view(-1, 1)).squeeze(1)
    foreign = labels.view(-1, 1) != torch.arange(enhanced_probs.shape[1]).view(1, -1)
    foreign_held = (confident & foreign).sum(0) / foreign.sum(0).clamp(min=1)
    return held & ~(foreign_held > MAX_FOREIGN_HELD)[labels]


def finetune_pool(new: torch.Tensor, suspected: torch.Tensor,
                  clean_share: float = RelabelConfig.finetune_clean_share) -> torch.Tensor | Subsample | None:
    """What the fine-tune trains on: every sample not left out (None: all of them), or under
    `clean_share` 1, each epoch all of the suspects not left out and that share of the rest."""
    trained = new != DROPPED
    if clean_share >= 1:
        return trained.nonzero().squeeze(1) if not bool(trained.all()) else None
    is_suspect = torch.zeros(len(new), dtype=torch.bool)
    is_suspect[torch.as_tensor(suspected, dtype=torch.int64)] = True
    return Subsample((trained & is_suspect).nonzero().squeeze(1), (trained & ~is_suspect).nonzero().squeeze(1),
                     clean_share)
