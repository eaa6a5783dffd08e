"""SCAnFT: SCAn (Tang et al., "Demon in the Variant", USENIX Security 2021) detects, then the
detected samples are unlearned while the model fine-tunes on the reserved clean set.

SCAn models a sample's representation as its class identity plus a variation shared by all
classes. The variation's covariance is estimated on the reserved clean set. A clean class is
one identity; a class that also holds poison (images of other classes carrying a trigger)
is two. For each class of the untrusted set, the statistic is how much better two
identities explain its representations than one (a per-sample log-likelihood ratio under
the shared covariance); a class whose statistic is an outlier among all classes (robust
z-score above e^2, the paper's threshold) is flagged, and its smaller subgroup is the
detected poison. The identities are split by the representation's leading whitened
direction, then refined by nearest identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from meca_cli.defences.finetuning import RepairConfig


@dataclass(frozen=True)
class SCAnConfig:
    threshold: float = math.exp(2)  # the paper's robust z-score threshold
    iterations: int = 10  # refinements of the two-identity split
    ridge: float = 1e-3  # relative ridge keeping the covariance invertible
    unlearn_ceiling: float = 5.0  # stop ascending a detected sample's loss beyond this


def penultimate_features(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Inputs of the model's last linear layer (its representation), float64 on the CPU."""
    from meca_cli.core.train import predict_with_features

    return predict_with_features(model, images, device)[1].double()


def within_class_precision(features: torch.Tensor, labels: torch.Tensor, ridge: float) -> torch.Tensor:
    """Inverse of the pooled within-class covariance (the variation shared by all classes)."""
    centred = torch.cat([features[labels == c] - features[labels == c].mean(0) for c in labels.unique()])
    cov = centred.T @ centred / max(1, len(centred) - len(labels.unique()))
    # The floor keeps a degenerate clean set (one image per class) usable: Euclidean distances.
    cov += (ridge * float(torch.trace(cov)) / cov.shape[0] + 1e-6) * torch.eye(cov.shape[0], dtype=cov.dtype)
    return torch.linalg.inv(cov)


def two_identities(x: torch.Tensor, precision: torch.Tensor, iterations: int) -> tuple[float, torch.Tensor]:
    """Per-sample log-likelihood gain of two identities over one, and the subgroup mask."""
    def mahalanobis(y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        d = y - mean
        return ((d @ precision) * d).sum(1)

    one = mahalanobis(x, x.mean(0))
    whiten = torch.linalg.cholesky(precision)
    white = (x - x.mean(0)) @ whiten
    direction = torch.linalg.svd(white, full_matrices=False).Vh[0]
    group = white @ direction > 0
    for _ in range(iterations):
        if group.all() or not group.any():
            return 0.0, torch.zeros_like(group)
        d1, d2 = mahalanobis(x, x[group].mean(0)), mahalanobis(x, x[~group].mean(0))
        regrouped = d1 < d2
        if torch.equal(regrouped, group):
            break
        group = regrouped
    if group.all() or not group.any():
        return 0.0, torch.zeros_like(group)
    two = torch.minimum(mahalanobis(x, x[group].mean(0)), mahalanobis(x, x[~group].mean(0)))
    return float((one - two).mean() / 2), group


def scan_detect(features: torch.Tensor, labels: torch.Tensor, clean_features: torch.Tensor,
                clean_labels: torch.Tensor, cfg: SCAnConfig = SCAnConfig()) -> tuple[torch.Tensor, dict[int, float]]:
    """The detected samples (mask) and each class's robust z-score."""
    precision = within_class_precision(clean_features, clean_labels, cfg.ridge)
    gains: dict[int, float] = {}
    minority: dict[int, torch.Tensor] = {}
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().squeeze(1)
        if len(members) < 4:
            continue
        gains[c], group = two_identities(features[members], precision, cfg.iterations)
        smaller = group if int(group.sum()) <= len(group) // 2 else ~group
        minority[c] = members[smaller]
    values = torch.tensor(list(gains.values()), dtype=torch.float64)
    median = values.median()
    mad = (values - median).abs().median() * 1.4826
    z = {c: float((g - median) / mad) if mad > 0 else 0.0 for c, g in gains.items()}
    flagged = torch.zeros(len(labels), dtype=torch.bool)
    for c, score in z.items():
        if score > cfg.threshold:
            flagged[minority[c]] = True
    return flagged, z


def scanft(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, clean_images: torch.Tensor,
           clean_labels: torch.Tensor, device: torch.device, cfg: SCAnConfig = SCAnConfig(),
           repair: RepairConfig = RepairConfig()) -> tuple[nn.Module, torch.Tensor, dict[int, float]]:
    """Detect with SCAn on the model's representations, then fine-tune on the reserved clean
    set while unlearning the detected samples. Returns the model, the mask, the class z-scores."""
    from meca_cli.core.train import fit

    flagged, z = scan_detect(penultimate_features(model, images, device), labels,
                             penultimate_features(model, clean_images, device), clean_labels, cfg)
    detected = flagged.nonzero().squeeze(1)
    both = torch.cat([clean_images, images[detected]])
    weights = torch.cat([torch.ones(len(clean_images)), -torch.ones(len(detected))])
    model = fit(model, both, torch.cat([clean_labels, labels[detected]]), repair.train_config(), device,
                sample_weights=weights, ascent_ceiling=cfg.unlearn_ceiling)
    return model, flagged, z
