from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import IMAGE_SIZE, SplitConfig
from meca_cli.errors import cli_errors
from meca_cli.options import MinConfidence, SplitRule, SplitRules, SkipBad, CacheDir, DataArg, Device, Force, Format, FormatOpt, ImageSize, ModelOpt, Out


@cli_errors
def split(
    data: DataArg,
    model: ModelOpt,
    out: Out = Path("meca-run/split"),
    scores: Annotated[Path | None, typer.Option(help="scores.csv to carry the KL score into split.csv.")] = None,
    max_suspected: Annotated[float, typer.Option(min=0, max=1, help="At most this fraction is suspected.")] = SplitConfig.max_suspected,
    rule: SplitRule = SplitRules(SplitConfig.rule),
    min_confidence: MinConfidence = SplitConfig.min_confidence,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Split the data with the backdoor-enhanced model: samples it still labels as given are
    suspected. Writes OUT/clean.idx, OUT/suspected.idx, OUT/split.csv (--format csv prints it)."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    result = steps.split(data, model, out, steps.Common(device, image_size, cache_dir, force, skip_bad),
                         SplitConfig(rule=rule.value, min_confidence=min_confidence, max_suspected=max_suspected), scores=scores)
    report_step(result, fmt, csv_file=out / "split.csv",
                next_hint=f"meca train {data} --indices {out / 'clean.idx'} --out meca-run/train-clean")
