"""Commands on recipes, which need no service home: ``validate``, ``compile``, ``schema``.

The recipe loader (PyYAML, jsonschema) and the compiler are imported when a command runs.

Example:
    $ slipstream validate templates/
    $ slipstream compile webapp --cloud web=aws-eu --clouds clouds.yaml --out build/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli.options import (
    CloudOpt,
    CloudsOpt,
    InputFileOpt,
    InputOpt,
    JsonOpt,
    MultiplicityOpt,
    RootOpt,
    deployment_root,
    overrides,
    recipe_root,
    service_home,
)
from engine.cli.output import fail, print_json

if TYPE_CHECKING:
    from engine.errors import Problem
    from engine.recipes.loader import RecipeLoader

NOT_RECIPES = {"clouds.yaml", "clouds.yml", "slipstream.yaml", "slipstream.yml"}


def recipe_files(paths: list[Path]) -> list[Path]:
    """The recipe files named, and those under the folders named (hidden folders and
    configuration files skipped), in a stable order.

    Example:
        >>> from templates import TEMPLATES_DIR
        >>> [f.name for f in recipe_files([TEMPLATES_DIR]) if f.stem == "webapp"]
        ['webapp.yaml']
    """
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


def validate(
    paths: Annotated[list[Path], typer.Argument(help="recipe files or folders of recipes")],
    root: RootOpt = None,
    clouds: CloudsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check recipes (components and deployments); print every problem with file:line:column."""
    from engine.errors import RecipeInvalid
    from engine.recipes.clouds import load_home_clouds
    from engine.recipes.loader import RecipeLoader

    try:
        config = load_home_clouds(service_home(), clouds)
    except RecipeInvalid as err:
        fail(err.problems, as_json, "clouds configuration")
    files = recipe_files(paths)
    loaders: dict[tuple[Path, bool], RecipeLoader] = {}
    problems: list[Problem] = []
    for file in files:
        base, walk = (root, True) if root else recipe_root(file)
        loader = loaders.setdefault((base, walk), RecipeLoader(base, config, walk=walk))
        loader.validate_file(file, str(file))
    for loader in loaders.values():
        problems.extend(loader.problems)
    problems = sorted(set(problems))
    if problems:
        fail(problems, as_json, "validate")
    if as_json:
        print_json({"ok": True, "files": [str(f) for f in files]})
    else:
        typer.echo(f"ok: {len(files)} recipe file(s) valid")


def compile_cmd(
    deployment: Annotated[str, typer.Argument(help="deployment file, or its name")],
    inputs: InputOpt = None,
    input_files: InputFileOpt = None,
    cloud: CloudOpt = None,
    multiplicity: MultiplicityOpt = None,
    clouds: CloudsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out"),
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile a deployment to one Terraform JSON root per cloud: OUT/<cloud>/main.tf.json."""
    from engine.compile.compiler import compile_text
    from engine.errors import CloudError, RecipeInvalid
    from engine.files import write_atomic
    from engine.recipes.clouds import load_home_clouds
    from engine.recipes.loader import RecipeLoader

    parsed = overrides(inputs, cloud, multiplicity, input_files)
    try:
        config = load_home_clouds(service_home(), clouds)
        base, walk = deployment_root(deployment, root)
        loader = RecipeLoader(base, config, walk=walk)
        dep = loader.deployment(deployment, parsed, require_values=True)
        texts = compile_text(dep, config)
    except RecipeInvalid as err:
        fail(err.problems, as_json, "compile")
    except CloudError as err:
        typer.echo(f"compile: {err}", err=True)
        raise typer.Exit(1) from err
    written: dict[str, str] = {}
    for name, text in texts.items():
        target = out / name / "main.tf.json"
        write_atomic(target, text, mode=0o644, dir_mode=0o755)  # a build output, not a secret
        written[name] = str(target)
    if as_json:
        doc: dict[str, Any] = {
            "ok": True,
            "deployment": dep.name,
            "roots": written,
            "instances": dep.instance_count(),
        }
        print_json(doc)
    else:
        for name, path in written.items():
            typer.echo(f"{name}: {path}")


def schema(
    gitops: Annotated[
        bool, typer.Option("--gitops", help="the schema of slipstream.yaml instead")
    ] = False,
) -> None:
    """Print the JSON Schema (draft-07) of recipe files, for editors."""
    if gitops:
        from engine.gitops.declarations import DECLARATIONS_SCHEMA

        print_json(DECLARATIONS_SCHEMA)
        return
    from engine.recipes.schema import recipe_schema

    print_json(recipe_schema())
