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


def _option_names(command) -> dict[str, tuple[str, bool]]:
    """Every spelling of each option of `command` -> (parameter name, negated). The second
    name of an on/off flag (`--no-augment`) sets the parameter to the opposite value."""
    names = {}
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            for opt in param.opts:
                if opt.startswith("--"):
                    names[opt[2:].replace("-", "_")] = (param.name, False)
            for opt in param.secondary_opts:
                if opt.startswith("--"):
                    names[opt[2:].replace("-", "_")] = (param.name, True)
            names.setdefault(param.name, (param.name, False))
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
            found = known.get(key.lstrip("-").replace("-", "_"))
            if found is None:
                raise typer.BadParameter(f"{path}: [{name}] has no option {key!r} "
                                         f"(see 'meca {name} --help')", param_hint="--config")
            param, negated = found
            if negated and not isinstance(value, bool):
                raise typer.BadParameter(f"{path}: [{name}] {key} takes true or false", param_hint="--config")
            defaults[name][param] = (not value) if negated else value
    return defaults
