"""Channel pruning shared by the pruning defences: a channel is pruned by zeroing the
scale and shift of the batch norm after its convolution (its output is then 0 before the
activation), kept at zero while the model is fine-tuned afterwards."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """(name, conv, bn) for each convolution directly followed by its batch norm, in order.
    Modules register in the order they are built, which is conv then bn in every
    architecture meca builds (VGG-style blocks, torchvision ResNets and MobileNetV2)."""
    pairs, previous = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, tuple) \
                and previous[1].out_channels == module.num_features:
            pairs.append((previous[0], previous[1], module))
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            previous = (name, module) if isinstance(module, nn.Conv2d) else None
    return pairs


@torch.no_grad()
def prune_channels(bn: nn.BatchNorm2d, channels: torch.Tensor) -> None:
    bn.weight[channels] = 0
    bn.bias[channels] = 0


def keep_pruned(bn: nn.BatchNorm2d, channels: torch.Tensor) -> list:
    """Gradient hooks that hold pruned channels at zero during fine-tuning; returns the
    handles (remove them when done)."""
    mask = torch.ones_like(bn.weight)
    mask[channels] = 0
    return [p.register_hook(lambda g, m=mask: g * m) for p in (bn.weight, bn.bias)]
