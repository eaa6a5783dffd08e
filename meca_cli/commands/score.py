from __future__ import annotations

from pathlib import Path

from meca_cli.config import ScoreConfig
from meca_cli.errors import cli_errors
from meca_cli.options import (BatchSize, CacheDir, DataArg, Device, Eps, Force, Format, FormatOpt, ImageSize, Masks,
                              ModelOpt, Out, Patch, Seed)


@cli_errors
def score(
    data: DataArg,
    model: ModelOpt,
    out: Out = Path("meca-run/score"),
    eps: Eps = ScoreConfig.eps,
    patch: Patch = ScoreConfig.patch,
    masks: Masks = ScoreConfig.masks,
    batch_size: BatchSize = ScoreConfig.batch_size,
    seed: Seed = 0,
    device: Device = "auto",
    image_size: ImageSize = 32,
    cache_dir: CacheDir = None,
    force: Force = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Score every sample's robustness: KL between the model's output before and after a
    worst-case perturbation confined to a tiny random patch. Low = suspicious.
    Writes OUT/scores.csv (--format csv prints it)."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    cfg = ScoreConfig(eps=eps, patch=patch, masks=masks, batch_size=batch_size, seed=seed)
    result = steps.score(data, model, out, steps.Common(device, image_size, cache_dir, force), cfg)
    report_step(result, fmt, csv_file=out / "scores.csv", next_hint=f"meca partition {out / 'scores.csv'}")
