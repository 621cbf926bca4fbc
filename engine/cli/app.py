"""The ``slipstream`` command line: the one composition root of the engine.

Results go to stdout (``--json`` for a machine-readable document), progress and errors
to stderr. Exit codes: 0 success, 1 failure (for example an invalid recipe), 2 usage error.

The commands live by group in ``recipes``, ``runs`` and ``inspection``; this module only
gathers them. Importing it costs Typer and the standard library: every engine package with
heavy dependencies is imported by the command that needs it (``tests/cli/test_imports.py``).

Example:
    $ slipstream validate templates/
    $ slipstream compile webapp --cloud web=aws-eu --clouds clouds.yaml --out build/
"""

from __future__ import annotations

import signal
import sys

import typer

from engine.cli import inspection, recipes, runs

app = typer.Typer(
    name="slipstream",
    help="Coordinated multi-cloud deployments from YAML recipes, on Terraform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In this order in --help.
app.command()(recipes.validate)
app.command("compile")(recipes.compile_cmd)
app.command()(runs.deploy)
app.command()(runs.resume)
app.command()(runs.destroy)
app.command()(inspection.status)
app.command("list")(inspection.list_cmd)
app.command()(inspection.params)
app.command()(inspection.logs)
app.command()(recipes.schema)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``slipstream`` console script."""
    # A CI cancel or a service manager stops us with SIGTERM: handle it like Ctrl-C, so
    # running Terraform commands are cancelled instead of orphaned.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
