"""All human-facing output goes to stderr; stdout carries only results."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console

err = Console(stderr=True, highlight=False)
_quiet = False

RESULT_VERSION = "1"


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def _primary() -> bool:
    # Under torchrun only rank 0 talks.
    return os.environ.get("RANK", "0") == "0"


def info(message: str) -> None:
    if not _quiet and _primary():
        err.print(message, markup=False)


def warn(message: str) -> None:
    if _primary():
        err.print(f"warning: {message}", style="yellow", markup=False)


def error(message: str, hint: str | None = None) -> None:
    err.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    if hint:
        err.print(f"hint: {hint}", markup=False, soft_wrap=True)


def emit_json(payload: dict) -> None:
    """Machine output: plain JSON on stdout, versioned, never through Rich."""
    from meca_cli.store.artifacts import json_text

    sys.stdout.write(json_text({"meca_result_version": RESULT_VERSION, **payload}))
    sys.stdout.flush()


def summary_table(rows: list[tuple[str, object]], title: str) -> None:
    """A short Rich table for people, on stderr (so stdout stays a clean result); not with --quiet."""
    if _quiet or not _primary():
        return
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    for key, value in rows:
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    err.print(table)


def emit_table(rows: list[tuple[str, object]], title: str | None = None) -> None:
    """Human output on stdout: a two-column key/value table (plain text, pipe-friendly)."""
    width = max((len(k) for k, _ in rows), default=0)
    if title:
        sys.stdout.write(title + "\n")
    for key, value in rows:
        if isinstance(value, float):
            value = f"{value:.4g}"
        sys.stdout.write(f"  {key.ljust(width)}  {value}\n")
    sys.stdout.flush()


class Progress:
    """A progress reporter for long loops.

    On a terminal it draws a Rich bar; elsewhere (CI logs, pipes) it prints a plain line
    every ~10 % or 30 s, since Rich draws nothing useful there.
    """

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, max(int(total), 1), 0
        self.start = time.monotonic()
        self._last_line, self._last_pct = self.start, -1
        self._bar = None
        self._enabled = not _quiet and _primary()
        if self._enabled and err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=err, redirect_stdout=False, redirect_stderr=False, transient=True,
            )
            self._task = self._bar.add_task(label, total=self.total)
            self._bar.start()

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=f"{self.label} {note}".strip())
            return
        pct = int(100 * self.done / self.total)
        now = time.monotonic()
        if pct // 10 > self._last_pct // 10 or now - self._last_line > 30:
            self._last_pct, self._last_line = pct, now
            elapsed = now - self.start
            left = f" ~{elapsed / self.done * (self.total - self.done):.0f}s left" if 0 < self.done < self.total else ""
            err.print(f"{self.label}: {pct}% ({self.done}/{self.total}) {elapsed:.0f}s{left} {note}".rstrip(),
                      markup=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress(label: str, total: int) -> Iterator[Progress]:
    bar = Progress(label, total)
    try:
        yield bar
    finally:
        bar.close()
