"""Exit codes and the error types that carry them to the command line."""

from __future__ import annotations

import functools
from enum import IntEnum
from typing import Callable, TypeVar


class ExitCode(IntEnum):
    OK = 0  # success, including "already up to date"
    GATE_FAILED = 1  # only when --fail-over was given and tripped
    USAGE = 2  # bad flags, bad or missing input, version mismatch
    INTERNAL = 3  # a bug or an unexpected runtime failure
    INTERRUPTED = 130  # SIGINT: stopped cleanly, resumable


class MecaError(Exception):
    """An error the user can fix; printed as one line `error: ...` and exit 2."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class DataError(MecaError):
    """The image folder (or a file in it) cannot be used."""


class ArtifactError(MecaError):
    """A run-directory artifact is missing, stale, or malformed."""


class ConfigError(MecaError):
    """A parameter or config file is invalid."""


F = TypeVar("F", bound=Callable)


def cli_errors(fn: F) -> F:
    """Turn MecaError into a one-line message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import typer

        from meca_cli.console import error

        try:
            return fn(*args, **kwargs)
        except MecaError as exc:
            error(str(exc), hint=exc.hint)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            error("interrupted; re-run the same command to resume")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]
