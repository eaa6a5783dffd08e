"""Relabelling: the suspected samples get the clean model's prediction as their label."""

from __future__ import annotations

import torch
from torch import nn

from meca_cli.core.train import predict_logits


def relabel(clean_model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suspected: torch.Tensor,
            device: torch.device) -> torch.Tensor:
    """The full label vector: given labels for the clean split, predictions for the suspects."""
    new = labels.clone()
    if len(suspected):
        new[suspected] = predict_logits(clean_model, images, device, indices=suspected).argmax(1)
    return new
