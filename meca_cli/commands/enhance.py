from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import IMAGE_SIZE, SEED, EnhanceConfig, ScoreConfig
from meca_cli.errors import cli_errors
from meca_cli.options import (LastRoundBy, LastRoundOrders, RescoreEvery, SkipBad, Unlearn, Unlearning, BatchSize, CacheDir, DataArg, Device, Eps, Force, Format, FormatOpt, ImageSize, Masks,
                              ModelOpt, Out, Patch, Seed)


@cli_errors
def enhance(
    data: DataArg,
    model: ModelOpt,
    clean_seed: Annotated[Path, typer.Option(help="Seed clean set (clean_seed.idx from 'meca partition').",
                                             show_default=False)],
    out: Out = Path("meca-run/enhance"),
    rounds: Annotated[int, typer.Option(min=1, help="Enhancement rounds T.")] = EnhanceConfig.rounds,
    rho_max: Annotated[float, typer.Option(min=0, max=1, help="Clean-set fraction unlearned in the last round.")] = EnhanceConfig.rho_max,
    lam: Annotated[float, typer.Option(min=0, help="Unlearning coefficient lambda.")] = EnhanceConfig.lam,
    ceiling: Annotated[float, typer.Option(min=0, help="No ascent on a sample whose loss exceeds this.")] = EnhanceConfig.ceiling,
    lr: Annotated[float, typer.Option(min=0, help="Learning rate of the enhancement epochs.")] = EnhanceConfig.lr,
    unlearn: Unlearn = Unlearning(EnhanceConfig.unlearn),
    epochs_per_round: Annotated[int, typer.Option(min=1, help="Epochs per round.")] = EnhanceConfig.epochs_per_round,
    rescore_every: RescoreEvery = EnhanceConfig.rescore_every,
    last_round_by: LastRoundBy = LastRoundOrders(EnhanceConfig.last_round_by),
    eps: Eps = ScoreConfig.eps,
    patch: Patch = ScoreConfig.patch,
    masks: Masks = ScoreConfig.masks,
    batch_size: BatchSize = EnhanceConfig.batch_size,
    seed: Seed = SEED,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Backdoor enhancement: rounds that learn the data minus a growing clean set and unlearn
    that set. Writes OUT/model.safetensors (the enhanced model) and OUT/rounds.csv."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    cfg = EnhanceConfig(rounds=rounds, rho_max=rho_max, lam=lam, ceiling=ceiling, lr=lr, unlearn=unlearn.value,
                        epochs_per_round=epochs_per_round, rescore_every=rescore_every,
                        last_round_by=last_round_by.value, batch_size=batch_size,
                        seed=seed)
    score_cfg = ScoreConfig(eps=eps, patch=patch, masks=masks, seed=seed)
    result = steps.enhance(data, model, clean_seed, out, steps.Common(device, image_size, cache_dir, force, skip_bad), cfg,
                           score_cfg)
    report_step(result, fmt, csv_file=out / "rounds.csv",
                next_hint=f"meca split {data} --model {out / 'model.safetensors'}")
