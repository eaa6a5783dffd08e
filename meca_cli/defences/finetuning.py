"""FineTuning and FinePruning (Liu, Dolan-Gavitt and Garg, RAID 2018), repairing a model
with a small reserved clean set.

FinePruning: backdoor neurons stay dormant on clean inputs. The channels of the last
convolution are pruned in increasing order of their mean activation on the clean set,
while the clean accuracy stays within `max_drop` of the unpruned model; then the model is
fine-tuned with the pruned channels held at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from meca_cli.config import TrainConfig
from meca_cli.defences.pruning import conv_bn_pairs, keep_pruned, prune_channels


@dataclass(frozen=True)
class RepairConfig:
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    seed: int = 0
    prune_step: float = 0.05  # FinePruning: fraction of the layer's channels pruned per step
    max_drop: float = 0.04  # FinePruning: stop before clean accuracy falls more than this

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, min_steps=0, batch_size=self.batch_size, lr=self.lr, seed=self.seed)


def finetuning(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
               cfg: RepairConfig = RepairConfig()) -> nn.Module:
    from meca_cli.core.train import fit

    return fit(model, images, labels, cfg.train_config(), device)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    from meca_cli.core.train import predict_logits

    return float((predict_logits(model, images, device).argmax(1) == labels).float().mean())


@torch.no_grad()
def mean_activation(model: nn.Module, bn: nn.BatchNorm2d, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean post-ReLU activation of each channel of `bn`'s output over the images."""
    from meca_cli.core.train import predict_logits

    total = torch.zeros(bn.num_features)

    def record(_module, _inputs, output):
        total.add_(output.detach().float().clamp_min(0).mean(dim=(0, 2, 3)).cpu() * len(output))

    handle = bn.register_forward_hook(record)
    try:
        predict_logits(model, images, device, fold=False)  # folded, `bn` would not run
    finally:
        handle.remove()
    return total / len(images)


def last_pruneable_bn(model: nn.Module) -> nn.BatchNorm2d:
    """The batch norm of the last convolution, when a ReLU follows it directly (smallcnn,
    MobileNetV2): zeroing a channel there silences it. In a ResNet the last block adds its
    shortcut after the batch norm, so the channel would stay alive: refused, not faked."""
    from meca_cli.errors import ConfigError

    modules = list(model.modules())
    _, _, bn = conv_bn_pairs(model)[-1]
    after = modules[modules.index(bn) + 1] if modules.index(bn) + 1 < len(modules) else None
    if not isinstance(after, (nn.ReLU, nn.ReLU6)):
        raise ConfigError("FinePruning needs a last convolution whose batch norm feeds a ReLU directly "
                          "(smallcnn, mobilenetv2); this architecture adds a shortcut there")
    return bn


def finepruning(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                cfg: RepairConfig = RepairConfig()) -> tuple[nn.Module, int]:
    """Prune the last convolution's dormant channels, then fine-tune; returns the model and
    how many channels were pruned."""
    from meca_cli.core.train import fit

    bn = last_pruneable_bn(model)
    order = mean_activation(model, bn, images, device).argsort(stable=True)  # most dormant first
    floor = _accuracy(model, images, labels, device) - cfg.max_drop
    saved = (bn.weight.detach().clone(), bn.bias.detach().clone())
    pruned = 0
    step = max(1, round(cfg.prune_step * bn.num_features))
    while pruned + step < bn.num_features:
        prune_channels(bn, order[:pruned + step])
        if _accuracy(model, images, labels, device) < floor:
            with torch.no_grad():  # undo the step that cost too much
                bn.weight.copy_(saved[0])
                bn.bias.copy_(saved[1])
            if pruned:
                prune_channels(bn, order[:pruned])
            break
        pruned += step
    channels = order[:pruned]
    handles = keep_pruned(bn, channels)
    try:
        model = fit(model, images, labels, cfg.train_config(), device)
    finally:
        for h in handles:
            h.remove()
    return model, pruned
