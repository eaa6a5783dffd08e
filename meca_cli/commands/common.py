"""Output helpers the commands share: one result, three formats."""

from __future__ import annotations

import sys
from pathlib import Path

from meca_cli.console import emit_json, emit_table, info
from meca_cli.options import Format
from meca_cli.steps import StepResult


def _flatten(summary: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in summary.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            rows.append((f"{prefix}{key}", f"[{len(value)} items]"))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def report_step(result: StepResult, fmt: Format, csv_file: Path | None = None, next_hint: str | None = None) -> None:
    """Print a step's result: a table or JSON summary, or (csv) the step's main table file."""
    if fmt is Format.json:
        emit_json(result.to_dict())
    elif fmt is Format.csv:
        if csv_file is None:
            emit_json(result.to_dict())
        else:
            sys.stdout.write(csv_file.read_text(encoding="utf-8"))
            sys.stdout.flush()
    else:
        state = "up to date" if result.skipped else f"done in {result.seconds:.1f}s"
        emit_table(_flatten(result.summary), title=f"{result.name}: {state} -> {result.out}")
    if next_hint:
        info(f"next: {next_hint}")
