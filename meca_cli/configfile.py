"""`meca --config FILE`: option defaults from a TOML file, one table per command.

    [sanitize]
    epochs = 30
    rho-max = 0.8

Keys are option names (with or without the leading dashes; '-' and '_' alike). They become
the command's defaults, so a flag given on the command line (or an environment variable)
still wins. An unknown table or key is an error, never ignored: a typo must not silently
leave a default in place.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import typer


def _option_names(command) -> dict[str, str]:
    """Every spelling of each option of `command` -> the parameter's name."""
    names = {}
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--"):
                    names[opt[2:].replace("-", "_")] = param.name
            names[param.name] = param.name
    return names


def load_defaults(path: Path, ctx: typer.Context) -> dict[str, dict]:
    """The TOML file as a click default_map: {command: {parameter: value}}."""
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"{path}: cannot read ({exc.strerror})", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path}: not valid TOML ({exc})", param_hint="--config") from None
    group = ctx.command
    defaults: dict[str, dict] = {}
    for name, values in table.items():
        command = group.get_command(ctx, name)
        if command is None or not isinstance(values, dict):
            raise typer.BadParameter(f"{path}: [{name}] is not a meca command table "
                                     f"(commands: {', '.join(sorted(group.list_commands(ctx)))})",
                                     param_hint="--config")
        known = _option_names(command)
        defaults[name] = {}
        for key, value in values.items():
            param = known.get(key.lstrip("-").replace("-", "_"))
            if param is None:
                raise typer.BadParameter(f"{path}: [{name}] has no option {key!r} "
                                         f"(see 'meca {name} --help')", param_hint="--config")
            defaults[name][param] = value
    return defaults
