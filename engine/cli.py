"""The ``slipstream`` command line: the one composition root of the engine.

Results go to stdout (``--json`` for a machine-readable document), progress and errors
to stderr. Exit codes: 0 success, 1 failure (for example an invalid recipe), 2 usage error.

Example:
    $ slipstream validate templates/
    $ slipstream compile webapp --cloud web=aws-eu --clouds clouds.yaml --out build/
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.canonical import dumps
from engine.clouds import CloudsConfig, load_clouds
from engine.compiler import compile_text
from engine.errors import CloudError, Problem, RecipeInvalid
from engine.files import write_atomic
from engine.loader import RecipeLoader
from engine.overrides import Overrides
from engine.schema import recipe_schema

app = typer.Typer(
    name="slipstream",
    help="Coordinated multi-cloud deployments from YAML recipes, on Terraform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

NOT_RECIPES = {"clouds.yaml", "clouds.yml", "slipstream.yaml", "slipstream.yml"}

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


def service_home() -> Path:
    """The service home: ``$SLIPSTREAM_HOME`` or ``./.slipstream``."""
    return Path(os.environ.get("SLIPSTREAM_HOME", ".slipstream"))


def _clouds(path: Path | None) -> CloudsConfig:
    if path is None:
        default = service_home() / "clouds.yaml"
        return load_clouds(default if default.exists() else None)
    return load_clouds(path)


def recipe_root(start: Path) -> Path:
    """The Git checkout (or folder with ``slipstream.yaml``) holding ``start``, else its folder."""
    here = start.resolve()
    folder = here if here.is_dir() else here.parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists() or (candidate / "slipstream.yaml").exists():
            return candidate
    return folder


def _fail(problems: list[Problem], as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(dumps({"ok": False, "problems": [p.to_json() for p in problems]}), nl=False)
    else:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{what}: {len(problems)} problem(s)", err=True)
    raise typer.Exit(1)


def _recipe_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files.extend(
                    Path(dirpath) / f
                    for f in sorted(filenames)
                    if f.endswith((".yaml", ".yml")) and f not in NOT_RECIPES
                )
        else:
            files.append(path)
    return files


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="recipe files or folders of recipes")],
    root: RootOpt = None,
    clouds: CloudsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check recipes (components and deployments); print every problem with file:line:column."""
    try:
        config = _clouds(clouds)
    except RecipeInvalid as err:
        _fail(err.problems, as_json, "clouds configuration")
    files = _recipe_files(paths)
    loaders: dict[Path, RecipeLoader] = {}
    problems: list[Problem] = []
    for file in files:
        base = root or recipe_root(file)
        loader = loaders.setdefault(base, RecipeLoader(base, config))
        loader.validate_file(file, str(file))
    for loader in loaders.values():
        problems.extend(loader.problems)
    problems = sorted(set(problems))
    if problems:
        _fail(problems, as_json, "validate")
    if as_json:
        typer.echo(dumps({"ok": True, "files": [str(f) for f in files]}), nl=False)
    else:
        typer.echo(f"ok: {len(files)} recipe file(s) valid")


@app.command("compile")
def compile_cmd(
    deployment: Annotated[str, typer.Argument(help="deployment file, or its name")],
    inputs: Annotated[list[str] | None, typer.Option("--input", help="KEY=VALUE")] = None,
    cloud: Annotated[list[str] | None, typer.Option("--cloud", help="NODE=CLOUD[,CLOUD…]")] = None,
    multiplicity: Annotated[list[str] | None, typer.Option("--multiplicity", help="NODE=N")] = None,
    clouds: CloudsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out"),
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile a deployment to one Terraform JSON root per cloud: OUT/<cloud>/main.tf.json."""
    try:
        overrides = Overrides.parse(inputs or [], cloud or [], multiplicity or [])
    except RecipeInvalid as err:
        for problem in err.problems:
            typer.echo(f"usage: {problem}", err=True)
        raise typer.Exit(2) from err
    try:
        config = _clouds(clouds)
        base = root or recipe_root(Path(deployment) if Path(deployment).exists() else Path.cwd())
        dep = RecipeLoader(base, config).deployment(deployment, overrides, require_values=True)
        texts = compile_text(dep, config)
    except RecipeInvalid as err:
        _fail(err.problems, as_json, "compile")
        return
    except CloudError as err:
        typer.echo(f"compile: {err}", err=True)
        raise typer.Exit(1) from err
    written: dict[str, str] = {}
    for name, text in texts.items():
        target = out / name / "main.tf.json"
        write_atomic(target, text)
        written[name] = str(target)
    if as_json:
        doc: dict[str, Any] = {
            "ok": True,
            "deployment": dep.name,
            "roots": written,
            "instances": dep.instance_count(),
        }
        typer.echo(dumps(doc), nl=False)
    else:
        for name, path in written.items():
            typer.echo(f"{name}: {path}")


@app.command()
def schema() -> None:
    """Print the JSON Schema (draft-07) of recipe files, for editors."""
    typer.echo(dumps(recipe_schema()), nl=False)


def main() -> None:
    """Entry point of the ``slipstream`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
