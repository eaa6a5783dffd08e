"""Does more full-resolution capacity let the protocol's CNN learn WaNet's warp?

Usage: python benchmarks/analysis/wanet_arch.py benchmarks/work/cifar10-small/wanet-s0 OUT_DIR

SmallCNN sees the image at full resolution through one 3x3 conv before its first max-pool,
and WaNet's warp moves pixels by about a quarter of a pixel. This variant adds a second
full-resolution conv (3->32->32, then the pool; the rest unchanged), trains it with the
shipped `meca train` recipe on the run's poisoned folder, and prints its clean accuracy and
attack success rate on the run's triggered test folder. The variant is swapped in for
this process only; nothing in the package changes.
"""

import sys
from pathlib import Path

from torch import nn

import meca_cli.core.models as models
from meca_cli.cli import app


def two_full_resolution_convs(self, num_classes: int, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
    nn.Module.__init__(self)
    w1, w2, w3 = widths
    conv = models._conv_bn
    self.features = nn.Sequential(
        conv(3, w1), conv(w1, w1), nn.MaxPool2d(2),
        conv(w1, w2), conv(w2, w2), nn.MaxPool2d(2),
        conv(w2, w3), conv(w3, w3), nn.MaxPool2d(2),
        conv(w3, w3), nn.AdaptiveMaxPool2d(1), nn.Flatten())
    self.head = nn.Linear(w3, num_classes)


def main(run: Path, out: Path) -> None:
    models.SmallCNN.__init__ = two_full_resolution_convs
    data = run / "data"
    test = run.parent.parent / "cifar10-src" / "cifar10" / "test"
    app(["train", str(data / "train"), "--out", str(out), "--device", "cpu", "-f", "json"], standalone_mode=False)
    app(["evaluate", str(out / "model.safetensors"), str(test), "--triggered", str(data / "test-triggered"),
         "--device", "cpu"], standalone_mode=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
