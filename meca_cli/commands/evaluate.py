from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.errors import cli_errors
from meca_cli.config import IMAGE_SIZE
from meca_cli.options import CacheDir, Device, Format, FormatOpt, ImageSize


@cli_errors
def evaluate(
    model: Annotated[Path | None, typer.Argument(help="Checkpoint (.safetensors) to evaluate.", show_default=False)] = None,
    data: Annotated[Path | None, typer.Argument(help="Clean test folder: accuracy.", show_default=False)] = None,
    triggered: Annotated[Path | None, typer.Option(help="Triggered test folder from 'meca poison --test': attack success rate.")] = None,
    target: Annotated[int | None, typer.Option(help="Target class index [default: from the triggered folder's attack card].")] = None,
    verdicts: Annotated[Path | None, typer.Option(help="verdicts.csv (or split.csv) of a run: detection metrics.")] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="ground_truth.csv written by 'meca poison'.")] = None,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    fmt: FormatOpt = Format.json,
) -> None:
    """Score a model (clean accuracy, attack success rate) and/or a run's verdicts (recall,
    false-positive rate, precision, F1, AUROC of the KL score) against ground truth."""
    from meca_cli import steps
    from meca_cli.console import emit_json, emit_table
    from meca_cli.core import evaluation
    from meca_cli.errors import ConfigError

    if model is None and verdicts is None:
        raise ConfigError("nothing to evaluate", hint="pass a MODEL and a test folder, or --verdicts with --ground-truth")
    result: dict = {}
    if model is not None:
        if data is None and triggered is None:
            raise ConfigError("a model needs a clean test folder and/or --triggered")
        common = steps.Common(device, image_size, cache_dir)
        dev = steps.device_of(common)
        clean = steps.open_data(data, common) if data is not None else None
        trig = steps.open_data(triggered, common, min_classes=1) if triggered is not None else None
        card = evaluation.read_attack_card(triggered) if triggered is not None else None
        if target is None and card is not None:
            target = int(card["target"])
        from meca_cli.store.checkpoint import check_fits, load_model

        net, meta = load_model(model, dev)
        for folder in (f for f in (clean, trig) if f is not None):
            check_fits(meta, folder, model, classes=folder is clean)
        result["model"] = evaluation.model_metrics(net, meta, clean, trig, target, dev)
    if verdicts is not None:
        if ground_truth is None:
            raise ConfigError("--verdicts needs --ground-truth")
        result["detection"] = evaluation.detection_metrics(verdicts, ground_truth)
    if fmt is Format.table:
        emit_table([(f"{group}.{k}", v) for group, values in result.items() for k, v in values.items()])
    else:
        emit_json(result)
