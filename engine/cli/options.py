"""What the commands share on the way in: option types, the service home, the acting user,
the recipe root and deploy-time overrides.

Imports Typer and the standard library only; the recipe model is imported when overrides
are parsed, so importing this module costs nothing a command does not need.

Example (a command taking ``--json``)::

    def status(run_id: str, as_json: JsonOpt = False) -> None: ...
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from engine.cli.client import ServiceClient
    from engine.recipes.overrides import Overrides

JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON document on stdout")]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="recipe root where components are found (default: the Git "
        "checkout holding the recipe, else its folder)",
    ),
]
CloudsOpt = Annotated[
    Path | None,
    typer.Option(
        "--clouds", help="clouds configuration (default: clouds.yaml in the service home)"
    ),
]
InputOpt = Annotated[list[str] | None, typer.Option("--input", help="KEY=VALUE")]
CloudOpt = Annotated[list[str] | None, typer.Option("--cloud", help="NODE=CLOUD[,CLOUD…]")]
MultiplicityOpt = Annotated[list[str] | None, typer.Option("--multiplicity", help="NODE=N")]


def service_home() -> Path:
    """The service home: ``$SLIPSTREAM_HOME`` or ``./.slipstream``.

    Example: ``SLIPSTREAM_HOME=/srv/slipstream slipstream list`` reads
    ``/srv/slipstream``; without it, ``.slipstream`` in the current folder.
    """
    return Path(os.environ.get("SLIPSTREAM_HOME", ".slipstream"))


def remote_client(command: str) -> ServiceClient | None:
    """The client of a resident service when ``SLIPSTREAM_URL`` and ``SLIPSTREAM_TOKEN``
    are set (then the command acts through it), else None; half of them is a usage error.

    Example: ``SLIPSTREAM_URL=https://ss.example:8780 SLIPSTREAM_TOKEN=ss_… slipstream list``
    lists the runs that token's user may see on that service.
    """
    if not os.environ.get("SLIPSTREAM_URL") and not os.environ.get("SLIPSTREAM_TOKEN"):
        return None  # the embedded mode, without importing the HTTP client
    from engine.cli.client import ClientSetupError, from_env

    try:
        return from_env(os.environ)
    except ClientSetupError as err:
        typer.echo(f"{command}: {err}", err=True)
        raise typer.Exit(2) from err


def user() -> str:
    """The acting user: ``$SLIPSTREAM_USER``, else the login name.

    Example: ``SLIPSTREAM_USER=ci-bot slipstream deploy webapp`` deploys as ``ci-bot``
    (CI jobs often run as a shared system account).
    """
    return os.environ.get("SLIPSTREAM_USER") or getpass.getuser()


def recipe_root(start: Path) -> Path:
    """The Git checkout (or folder with ``slipstream.yaml``) holding ``start``, else its folder.

    Example:
        >>> import tempfile
        >>> top = Path(tempfile.mkdtemp()).resolve()
        >>> (top / "slipstream.yaml").touch()
        >>> (top / "apps").mkdir()
        >>> recipe_root(top / "apps" / "webapp.yaml") == top
        True
    """
    here = start.resolve()
    folder = here if here.is_dir() else here.parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists() or (candidate / "slipstream.yaml").exists():
            return candidate
    return folder


def deployment_root(deployment: str) -> Path:
    """The recipe root for a deployment given as a file, or by name (then: from here).

    Example:
        >>> deployment_root("webapp") == recipe_root(Path.cwd())
        True
    """
    return recipe_root(Path(deployment) if Path(deployment).exists() else Path.cwd())


def overrides(
    inputs: list[str] | None, cloud: list[str] | None, multiplicity: list[str] | None
) -> Overrides:
    """Parsed deploy-time overrides; a malformed one is a usage error (exit 2).

    Example:
        >>> overrides(["greeting=hi"], None, ["web=3"]).multiplicity["web"]
        3
    """
    from engine.errors import RecipeInvalid
    from engine.recipes.overrides import Overrides

    try:
        parsed = Overrides.parse(inputs or [], cloud or [], multiplicity or [])
    except RecipeInvalid as err:
        for problem in err.problems:
            typer.echo(f"usage: {problem}", err=True)
        raise typer.Exit(2) from err
    for warning in parsed.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return parsed
