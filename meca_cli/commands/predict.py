from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.errors import cli_errors
from meca_cli.config import IMAGE_SIZE
from meca_cli.options import CacheDir, DataArg, Device, ImageSize


@cli_errors
def predict(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors).", show_default=False)],
    data: DataArg,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
) -> None:
    """Predict every image of a folder; prints CSV (index, path, label, pred, pred_class, conf) on stdout."""
    import sys

    from meca_cli import steps
    from meca_cli.core.train import predict_logits
    from meca_cli.store.artifacts import format_csv

    common = steps.Common(device, image_size, cache_dir)
    dataset = steps.open_data(data, common)
    dev = steps.device_of(common)
    net, meta = steps.load_checkpoint(model, dataset, dev)
    probs = predict_logits(net, dataset.images, dev).softmax(1)
    conf, pred = probs.max(1)
    sys.stdout.write(format_csv(("index", "path", "label", "pred", "pred_class", "conf"),
                                ((i, dataset.scan.paths[i], int(dataset.labels[i]), int(pred[i]),
                                  meta.classes[int(pred[i])], float(conf[i])) for i in range(len(dataset)))))
