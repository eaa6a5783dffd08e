"""Entry point: runs the Typer app and maps anything unexpected to exit code 3."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from meca_cli.cli import app
    from meca_cli.errors import ExitCode

    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; re-run the same command to resume\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # a bug or a runtime failure: show it, exit 3 (never 1, the gate's code)
        if os.environ.get("MECA_DEBUG"):
            raise
        from rich.console import Console

        console = Console(stderr=True)
        console.print_exception(show_locals=False, max_frames=8)
        console.print(f"error: internal error ({exc.__class__.__name__}); set MECA_DEBUG=1 for the full traceback",
                      style="red", markup=False)
        sys.exit(int(ExitCode.INTERNAL))


if __name__ == "__main__":
    main()
