"""CLP: data-free backdoor removal by channel Lipschitzness (Zheng et al., ECCV 2022).

A backdoor rides on a few channels that react very strongly to a small input pattern. A
channel's upper bound on its Lipschitz constant (UCLC) is the spectral norm of its
convolution kernel scaled by its batch norm; channels whose UCLC exceeds their layer's
mean by more than `u` standard deviations are pruned. No data is needed.
"""

from __future__ import annotations

import torch
from torch import nn

from meca_cli.defences.pruning import conv_bn_pairs, prune_channels


def channel_lipschitz_bounds(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """UCLC per output channel: ||gamma_k / sigma_k * W_k||_2, W_k as (in, kh * kw)."""
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs()
    kernels = conv.weight.reshape(conv.out_channels, conv.weight.shape[1], -1)
    return torch.linalg.matrix_norm(kernels, ord=2) * scale


@torch.no_grad()
def clp(model: nn.Module, u: float = 3.0) -> dict[str, int]:
    """Prune, in place, every channel above mean + u * std of its layer's UCLCs; returns
    the number pruned per layer."""
    pruned = {}
    for name, conv, bn in conv_bn_pairs(model):
        if conv.groups != 1:  # depthwise kernels have one input each: no cross-channel bound to compare
            continue
        bounds = channel_lipschitz_bounds(conv, bn)
        outliers = (bounds > bounds.mean() + u * bounds.std()).nonzero().squeeze(1)
        if len(outliers):
            prune_channels(bn, outliers)
            pruned[name] = len(outliers)
    return pruned
