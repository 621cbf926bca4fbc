"""Recipes as the deploy panel sees them: the deployments one can pick, a deployment's
declared inputs and nodes, and the bundle of files a remote service needs.

Loading here only reads recipe files (as ``slipstream validate`` does); the service loads
them again, with the values given, when it plans or deploys.

Example:
    >>> form = load_form("webapp", None)
    >>> form.name, list(form.nodes), form.inputs["greeting"].default
    ('webapp', ['db', 'web', 'lb'], 'Hello')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Mark, Problem, RecipeInvalid
from engine.recipes.clouds import CloudsConfig
from engine.recipes.finder import SKIP_DIRS, SUFFIXES, RecipeFinder
from engine.recipes.loader import RecipeLoader
from engine.recipes.model import InputSpec

DEPLOYMENT_KIND = re.compile(r"^kind:\s*[\"']?deployment\b", re.MULTILINE)
RECIPE_KIND = re.compile(r"^kind:\s*[\"']?(component|deployment)\b", re.MULTILINE)
#: The service's limits on a bundle (engine.service): stop walking well before.
MAX_FILES = 500
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class NodeForm:
    """A node of the picked deployment: its default clouds and multiplicity."""

    name: str
    clouds: tuple[str, ...]
    multiplicity: int


@dataclass(frozen=True)
class DeploymentForm:
    """What the deploy panel builds widgets from."""

    name: str
    description: str
    inputs: dict[str, InputSpec]
    nodes: dict[str, NodeForm]


def deployment_names(root: Path | None) -> list[str]:
    """Deployments found under ``root`` (then the shipped templates), by name.

    >>> "webapp" in deployment_names(None)
    True
    """
    finder = RecipeFinder(root)
    names = []
    for name in finder.names():
        path = finder.find(name)
        if path is not None and _is_deployment(path):
            names.append(name)
    return names


def _is_deployment(path: Path) -> bool:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return False
        return bool(DEPLOYMENT_KIND.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def load_form(ref: str, root: Path | None, clouds: CloudsConfig | None = None) -> DeploymentForm:
    """The declared inputs and nodes of deployment ``ref`` (a path or a name); RecipeInvalid
    with every problem when it does not load."""
    loader = RecipeLoader(root_for(ref, root), clouds or CloudsConfig.default())
    dep = loader.deployment(ref if not Path(ref).exists() else Path(ref))
    nodes = {n.name: NodeForm(n.name, tuple(n.clouds), n.multiplicity) for n in dep.nodes.values()}
    return DeploymentForm(dep.name, dep.description, dict(dep.inputs), nodes)


def root_for(ref: str, root: Path | None) -> Path | None:
    """Where the recipes of ``ref`` are found: ``root``, or the folder of a file outside it."""
    path = Path(ref)
    if path.is_file():
        folder = path.resolve().parent
        if root is None or not folder.is_relative_to(root.resolve()):
            return folder
    return root


def bundle(ref: str, root: Path | None) -> tuple[dict[str, str], str]:
    """(relative path → text of the recipe files a remote service needs, the deployment as
    it will find it). A shipped template by name needs no file.

    >>> bundle("webapp", None)
    ({}, 'webapp')
    """
    base = root_for(ref, root)
    if base is None:
        return {}, ref
    base = base.resolve()
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.suffix not in SUFFIXES or filename.startswith("."):
                continue
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if RECIPE_KIND.search(text):
                files[path.relative_to(base).as_posix()] = text
            if len(files) > MAX_FILES:
                problem = Problem(Mark(str(base), 0, 0), f"more than {MAX_FILES} recipe files")
                raise RecipeInvalid([problem])
    path = Path(ref)
    if path.is_file():
        return files, path.resolve().relative_to(base).as_posix()
    return files, ref
