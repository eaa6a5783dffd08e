from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import SanitizeConfig
from meca_cli.errors import cli_errors
from meca_cli.options import Force, Format, FormatOpt, Out


@cli_errors
def partition(
    scores: Annotated[Path, typer.Argument(help="scores.csv written by 'meca score'.", show_default=False)],
    out: Out = Path("meca-run/partition"),
    rho0: Annotated[float, typer.Option(min=0, max=1, help="Fraction with the highest score taken as the seed clean set.")] = SanitizeConfig.rho0,
    force: Force = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Split the scored samples into a seed clean set (highest scores) and the rest.
    Writes OUT/clean_seed.idx and OUT/rest.idx (--format csv prints clean_seed.idx)."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    result = steps.partition(scores, out, rho0, force)
    report_step(result, fmt, csv_file=out / "clean_seed.idx",
                next_hint=f"meca enhance DATA --model MODEL --clean-seed {out / 'clean_seed.idx'}")
