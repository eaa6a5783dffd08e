"""Architectures. Every model takes images in [0, 1] and normalises them itself, so
perturbation budgets are in pixel units and checkpoints are self-contained."""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("smallcnn", "resnet18", "resnet34", "mobilenetv2")

# Per-channel statistics of natural images (CIFAR-10's); a fixed choice keeps every model
# of a run, and every checkpoint, on the same input scale.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A fast VGG-style net for CPU runs: one full-resolution conv, then three stages at
    16, 8 and 4 pixels. Pooling early keeps it at 1,300-1,600 training images/s on 2 CPU cores,
    so a full `meca sanitize` on 10,000 32x32 images takes minutes, not hours.
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv_bn(3, w1), nn.MaxPool2d(2),
            _conv_bn(w1, w2), _conv_bn(w2, w2), nn.MaxPool2d(2),
            _conv_bn(w2, w3), _conv_bn(w3, w3), nn.MaxPool2d(2),
            _conv_bn(w3, w3),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _resnet(arch: str, num_classes: int, image_size: int) -> nn.Module:
    from torchvision import models

    net = getattr(models, arch)(weights=None, num_classes=num_classes)
    if image_size <= 64:
        # CIFAR-style stem: a 3x3 stride-1 conv and no max-pool keep small images' detail.
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


def _mobilenetv2(num_classes: int, image_size: int) -> nn.Module:
    from torchvision import models

    net = models.mobilenet_v2(weights=None, num_classes=num_classes)
    if image_size <= 64:
        # Stride 1 in the stem for small images (the usual CIFAR adaptation).
        net.features[0][0].stride = (1, 1)
    return net


def build_model(arch: str, num_classes: int, image_size: int = 32) -> nn.Module:
    """A fresh, randomly initialised model; the caller seeds the global RNG first."""
    if arch == "smallcnn":
        net = SmallCNN(num_classes)
    elif arch in ("resnet18", "resnet34"):
        net = _resnet(arch, num_classes, image_size)
    elif arch == "mobilenetv2":
        net = _mobilenetv2(num_classes, image_size)
    else:
        from meca_cli.errors import ConfigError

        raise ConfigError(f"unknown architecture {arch!r}", hint=f"choose one of {', '.join(ARCHS)}")
    return nn.Sequential(Normalize(), net)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (`module.`) and torch.compile (`_orig_mod.`) wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
