"""The `meca` command line: a Typer app whose commands live in meca_cli.commands.

Nothing heavy is imported here, so `meca --help` answers instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli import __version__

app = typer.Typer(
    name="meca",
    help="Find backdoor-poisoned samples in an untrusted image folder and train a clean model on it "
         "(MeCa: no clean auxiliary data, no knowledge of the attack).\n\n"
         "Exit codes: 0 ok, 1 gate tripped (--fail-over), 2 usage or input error, 3 internal error, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"meca {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="MECA_CONFIG", metavar="FILE",
        help="TOML file of option defaults, one table per command ([sanitize], [train], ...); "
             "flags on the command line win. See examples/meca.toml.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results; no progress or info.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from meca_cli.console import set_quiet

    set_quiet(quiet)
    if config is not None:
        from meca_cli.configfile import load_defaults

        ctx.default_map = load_defaults(config, ctx)


COMMANDS = ("sanitize", "train", "score", "partition", "enhance", "split", "relabel", "predict", "evaluate", "poison", "bench", "report", "demo")


def _register() -> None:
    import importlib

    for name in COMMANDS:
        module = importlib.import_module(f"meca_cli.commands.{name}")
        app.command(name)(getattr(module, name))


_register()
