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

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from engine.cli import (
    accounts,
    dashboard,
    images,
    inspection,
    inventory,
    quotas,
    recipes,
    repos,
    runs,
    scale,
    scaled,
    serve,
)
from engine.cli.output import printable
from engine.errors import SlipstreamError, StoreError


def _unset_help_is_false(option: Any) -> Any:
    # Typer (0.2x) runs every value that is not already a bool through a pydantic adapter,
    # and the help option, processed on every call, is None when not given: defaulting it
    # to False spares the commands with flags only (list, schema) importing pydantic (0.1 s).
    if option is not None:
        option.default = False
    return option


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _unset_help_is_false(super().get_help_option(ctx))


class _Command(TyperCommand):
    def get_help_option(self, ctx: Any) -> Any:
        return _unset_help_is_false(super().get_help_option(ctx))


app = typer.Typer(
    name="slipstream",
    help="Coordinated multi-cloud deployments from YAML recipes, on Terraform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, as Click prints it: Rich's formatter costs 0.1-0.3 s of imports.
    rich_markup_mode=None,
    cls=_Group,
)

COMMANDS: list[tuple[str, Callable[..., None]]] = [  # in this order in --help
    ("validate", recipes.validate),
    ("compile", recipes.compile_cmd),
    ("deploy", runs.deploy),
    ("resume", runs.resume),
    ("destroy", runs.destroy),
    ("status", inspection.status),
    ("list", inspection.list_cmd),
    ("params", inspection.params),
    ("logs", inspection.logs),
    ("inventory", inventory.inventory),
    ("schema", recipes.schema),
    ("serve", serve.serve),
    ("build", images.build),
    ("images", images.images),
    ("usage", quotas.usage),
    ("scale", scale.scale),
    # Its module is cheap: Voilà loads in the process the command becomes.
    ("dashboard", dashboard.dashboard),
    ("worker", scaled.worker),
]
for name, function in COMMANDS:
    app.command(name, cls=_Command)(function)
for name, group in (
    ("user", accounts.users),
    ("token", accounts.tokens),
    ("right", accounts.rights),
    ("quota", quotas.quotas),
    ("db", scaled.db),
    ("repo", repos.repos),
):
    app.add_typer(group, name=name)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``slipstream`` console script (and of ``python -m engine.cli.app``).

    Example: ``slipstream list --json``; exits 130 when interrupted (Ctrl-C, SIGTERM), and
    1 with one line naming the command and the cause when the product refuses (a damaged
    run store, a home that is not writable, no Terraform).
    """
    # Everything the service creates (runs.db and its journals, run folders, sockets,
    # Terraform's files, sandboxes) is its user's alone.
    os.umask(0o077)
    # A CI cancel or a service manager stops us with SIGTERM: handle it like Ctrl-C, so
    # running Terraform commands are cancelled instead of orphaned.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except SlipstreamError as err:
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "slipstream")
        typer.echo(f"{command}: {printable(str(err), newlines=True)}", err=True)
        if isinstance(err, StoreError):
            typer.echo(
                f"{command}: to destroy a run's resources without the run store: "
                "slipstream destroy --from-state RUN",
                err=True,
            )
        sys.exit(1)


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
