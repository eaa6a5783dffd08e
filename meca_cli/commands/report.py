from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.errors import cli_errors
from meca_cli.config import IMAGE_SIZE
from meca_cli.options import CacheDir, DataArg, ImageSize


@cli_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run directory of 'meca sanitize'.", show_default=False)],
    data: DataArg,
    ground_truth: Annotated[Path | None, typer.Option(help="ground_truth.csv to split the score histogram by truth.")] = None,
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
) -> None:
    """Write RUN/report.html (self-contained: figures inline, no network) and RUN/report/*.png:
    the top suspects, random cleared images, score histograms, suspects per class, rounds."""
    from meca_cli import steps
    from meca_cli.console import info
    from meca_cli.report import build_report

    path = build_report(run, data, steps.Common(image_size=image_size, cache_dir=cache_dir), ground_truth)
    info(f"report: {path}")
    print(path)
