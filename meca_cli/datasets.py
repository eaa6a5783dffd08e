"""Real data sets that ship inside installed packages, written out as image folders.

`meca demo` needs a real data set with no download: scikit-learn bundles the UCI
handwritten digits (1,797 8x8 grey images, 10 classes), which we upscale to RGB.
"""

from __future__ import annotations

from pathlib import Path

import torch

from meca_cli.errors import ConfigError


def write_png(path: Path, image: torch.Tensor) -> None:
    """Save a uint8 3 x H x W tensor as a PNG (lossless, so triggers survive exactly)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB").save(path, format="PNG")


def digits_tensors(image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's digits as uint8 N x 3 x S x S (bilinear upscale, grey to RGB), labels, class names."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("the demo data set needs scikit-learn",
                          hint="pip install 'meca[demo]', or run 'meca demo --data DIR' on your own folder") from None
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # values 0..16
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    return images, labels, [f"digit{d}" for d in range(10)]


def split_train_test(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, class-stratified train/test split of indices."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = round(len(idx) * test_fraction)
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def write_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[str]:
    """Write DATA/<class>/NNNNN.png; returns the relative paths in index order."""
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        rel = f"{classes[int(label)]}/{i:05d}.png"
        write_png(root / rel, image)
        paths.append(rel)
    return paths
