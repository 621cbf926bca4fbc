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
import stat
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
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        help="KEY=VALUE or NODE:KEY=VALUE (on the command line, which every user of the host "
        "can read), or KEY=@FILE to read the value from FILE (@@ for a value starting with @)",
    ),
]
InputFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--input-file", help="a YAML mapping of inputs (KEY: VALUE), read before --input"),
]
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


def recipe_root(start: Path) -> tuple[Path, bool]:
    """Where recipes named by ``start`` are found, and whether below it too: the Git
    checkout (or folder with ``slipstream.yaml``) holding ``start``, searched whole; else
    ``start``'s own folder, searched alone (from ``/tmp``, walking would find whatever any
    user left there).

    Example:
        >>> import tempfile
        >>> top = Path(tempfile.mkdtemp()).resolve()
        >>> (top / "slipstream.yaml").touch()
        >>> (top / "apps").mkdir()
        >>> recipe_root(top / "apps" / "webapp.yaml") == (top, True)
        True
        >>> (top / "slipstream.yaml").unlink()
        >>> recipe_root(top / "apps" / "webapp.yaml") == (top / "apps", False)
        True
    """
    here = start.resolve()
    folder = here if here.is_dir() else here.parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists() or (candidate / "slipstream.yaml").exists():
            return candidate, True
    return folder, False


def deployment_root(deployment: str, root: Path | None = None) -> tuple[Path, bool]:
    """The recipe root for a deployment given as a file, or by name (then: from here);
    ``root`` (``--root``) when given, searched whole.

    Example:
        >>> deployment_root("webapp") == recipe_root(Path.cwd())
        True
    """
    if root is not None:
        return root, True
    return recipe_root(Path(deployment) if Path(deployment).exists() else Path.cwd())


def overrides(
    inputs: list[str] | None,
    cloud: list[str] | None,
    multiplicity: list[str] | None,
    input_files: list[Path] | None = None,
) -> Overrides:
    """Parsed deploy-time overrides; a malformed one is a usage error (exit 2). Values of
    ``KEY=@FILE`` inputs and of ``--input-file`` files are read here: only the command line
    reads the user's files, never a request from chat or the API.

    Example:
        >>> overrides(["greeting=hi"], None, ["web=3"]).multiplicity["web"]
        3
    """
    from engine.errors import RecipeInvalid
    from engine.recipes.overrides import Overrides

    try:
        items = [*input_file_items(input_files or []), *map(input_item, inputs or [])]
        parsed = Overrides.parse(items, cloud or [], multiplicity or [])
    except RecipeInvalid as err:
        for problem in err.problems:
            typer.echo(f"usage: {problem}", err=True)
        raise typer.Exit(2) from err
    for warning in parsed.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return parsed


def input_item(item: str) -> str:
    """``KEY=@FILE`` as ``KEY=<the file's text>`` (one final newline dropped); ``KEY=@@x``
    as ``KEY=@x``; anything else as it is.

    Example:
        >>> input_item("handle=@@alice"), input_item("greeting=hi")
        ('handle=@alice', 'greeting=hi')
    """
    from engine.errors import Mark, Problem, RecipeInvalid

    key, sep, value = item.partition("=")
    if not sep or not value.startswith("@"):
        return item
    if value.startswith("@@"):
        return f"{key}={value[1:]}"
    path = Path(value[1:])
    try:
        text = read_value_file(path)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecipeInvalid([Problem(Mark(f"--input {key}=@{path}", 0, 0), why)]) from exc
    text = text.removesuffix("\n").removesuffix("\r")
    return f"{key}={text}"


def read_value_file(path: Path, limit: int = 1024 * 1024) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is over {limit} bytes")
    return data.decode("utf-8")


def input_file_items(paths: list[Path]) -> list[str]:
    """``KEY=VALUE`` items from YAML files of inputs (a mapping of names to scalars)."""
    from engine.errors import Problem, RecipeInvalid
    from engine.recipes.yamlsrc import parse_file

    items, problems = [], []
    for path in paths:
        doc = parse_file(path)
        if not isinstance(doc.value, dict):
            problems.append(Problem(doc.mark, "expected a mapping of input names to values"))
            continue
        for key, value in doc.value.items():
            if isinstance(value.value, (dict, list)) or value.value is None:
                problems.append(Problem(value.mark, f"input `{key}`: expected a single value"))
            else:
                items.append(f"{key}={value.as_text()}")
    if problems:
        raise RecipeInvalid(problems)
    return items
