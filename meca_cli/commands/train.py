from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import IMAGE_SIZE, SEED, TrainConfig
from meca_cli.errors import cli_errors
from meca_cli.options import (MinSteps, SkipBad, Arch, BatchSize, CacheDir, DataArg, Device, Epochs, Force, Format, FormatOpt, ImageSize,
                              Lr, Out, Seed, WeightDecay)


@cli_errors
def train(
    data: DataArg,
    out: Out = Path("meca-run/train"),
    arch: Arch = "smallcnn",
    epochs: Epochs = TrainConfig.epochs,
    min_steps: MinSteps = TrainConfig.min_steps,
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: Lr = TrainConfig.lr,
    weight_decay: WeightDecay = TrainConfig.weight_decay,
    augment: Annotated[bool, typer.Option(help="Random crop + horizontal flip.")] = TrainConfig.augment,
    indices: Annotated[str | None, typer.Option(help="Train only on these samples (.idx file, or - for stdin).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Label overrides: a relabeled.csv (index, new_label).")] = None,
    init: Annotated[Path | None, typer.Option(help="Start from this checkpoint instead of random weights.")] = None,
    seed: Seed = SEED,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Train a model on an image folder. Writes OUT/model.safetensors; resumes after a crash."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    cfg = TrainConfig(epochs=epochs, min_steps=min_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, augment=augment,
                      seed=seed)
    result = steps.train(data, out, steps.Common(device, image_size, cache_dir, force, skip_bad), cfg, arch,
                         indices=indices, labels=labels, init=init)
    report_step(result, fmt, next_hint=f"meca score {data} --model {out / 'model.safetensors'}")
