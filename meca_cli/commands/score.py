from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import IMAGE_SIZE, SEED, ScoreConfig
from meca_cli.errors import cli_errors
from meca_cli.options import (SkipBad, CacheDir, EvalBatchSize, DataArg, Device, Eps, Force, Format, FormatOpt, ImageSize, Masks,
                              ModelOpt, Out, Patch, Seed)


@cli_errors
def score(
    data: DataArg,
    model: ModelOpt,
    out: Out = Path("meca-run/score"),
    eps: Eps = ScoreConfig.eps,
    patch: Patch = ScoreConfig.patch,
    masks: Masks = ScoreConfig.masks,
    batch_size: EvalBatchSize = ScoreConfig.batch_size,
    shard: Annotated[str | None, typer.Option(help="Score only part i of n (e.g. 3/8) into OUT/shards/; for job arrays.")] = None,
    merge: Annotated[int | None, typer.Option(min=1, help="Join the N finished shards in OUT/shards/ into OUT/scores.csv.")] = None,
    seed: Seed = SEED,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Score every sample's robustness: KL between the model's output before and after a
    worst-case perturbation confined to a tiny random patch. Low = suspicious.
    Writes OUT/scores.csv (--format csv prints it)."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    from meca_cli.errors import ConfigError

    cfg = ScoreConfig(eps=eps, patch=patch, masks=masks, batch_size=batch_size, seed=seed)
    common = steps.Common(device, image_size, cache_dir, force, skip_bad)
    if merge is not None:
        result = steps.merge_scores(data, model, out, common, cfg, merge)
    elif shard is not None:
        try:
            part, parts = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard: expected i/n such as 3/8, got {shard!r}") from None
        if not 1 <= part <= parts:
            raise ConfigError(f"--shard {shard}: i must be between 1 and n")
        result = steps.score(data, model, out, common, cfg, shard=(part, parts))
        report_step(result, fmt, csv_file=result.out / "scores.csv",
                    next_hint=f"when all {parts} shards are done: meca score ... --merge {parts}")
        return
    else:
        result = steps.score(data, model, out, common, cfg)
    report_step(result, fmt, csv_file=out / "scores.csv", next_hint=f"meca partition {out / 'scores.csv'}")
