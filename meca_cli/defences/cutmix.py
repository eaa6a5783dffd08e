"""CutMix as a defence (Borgnia et al., ICASSP 2021): strong data augmentation keeps a
model from tying a small trigger to the target label. Train from scratch with CutMix on
every batch, then the repair phase: fine-tune on the reserved clean set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from meca_cli.config import TrainConfig
from meca_cli.defences.finetuning import RepairConfig, finetuning


@dataclass(frozen=True)
class CutMixConfig:
    probability: float = 1.0  # share of batches CutMixed


def cutmix(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, clean_images: torch.Tensor,
           clean_labels: torch.Tensor, train: TrainConfig, device: torch.device, cfg: CutMixConfig = CutMixConfig(),
           repair: RepairConfig = RepairConfig()) -> nn.Module:
    from meca_cli.core.train import fit

    model = fit(model, images, labels, train, device, cutmix=cfg.probability)
    return finetuning(model, clean_images, clean_labels, device, repair)
