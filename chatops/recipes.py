"""Finding a deployment by the name someone types in chat: the one lookup of every text
front end, and the place the GitOps work extends.

A name is looked up in ``places`` in order (folders holding recipes: today the service's
recipe root; with GitOps, the checkouts of the registered repositories first), each
searched the way ``slipstream deploy NAME`` searches its recipe root, then in the shipped
``templates/``. Only a file declaring ``kind: deployment`` counts. The name must match
the recipe name pattern before anything is looked at, so chat text never becomes a path.

Example:
    >>> found = find_deployment("webapp", [])
    >>> found.path.name, found.nodes
    ('webapp.yaml', ('db', 'web', 'lb'))
    >>> find_deployment("webap", [])
    Traceback (most recent call last):
    ...
    chatops.recipes.UnknownRecipe: no deployment named `webap`; did you mean `webapp`?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RecipeInvalid, SlipstreamError
from engine.recipes.finder import RecipeFinder
from engine.recipes.schema import NAME_RE
from engine.recipes.yamlsrc import parse_file


@dataclass(frozen=True)
class FoundRecipe:
    """A deployment file, the recipe root its components are found under (None: only the
    shipped templates), and its node names."""

    name: str
    path: Path
    root: Path | None
    nodes: tuple[str, ...]


class UnknownRecipe(SlipstreamError):
    """No deployment of that name; ``nearest`` is the closest name there is, if any."""

    def __init__(self, name: str, nearest: str | None) -> None:
        self.name = name
        self.nearest = nearest
        hint = f"; did you mean `{nearest}`?" if nearest else ""
        super().__init__(f"no deployment named `{name}`{hint}")


def find_deployment(name: str, places: Sequence[Path]) -> FoundRecipe:
    """The deployment called ``name``: the first found in ``places`` (each one's own files),
    then in the shipped templates; :class:`UnknownRecipe` otherwise."""
    if not re.match(NAME_RE, name):
        raise UnknownRecipe(name, None)
    for place in places:
        root = place.resolve()
        for path in RecipeFinder(place).candidates(name):
            if path.resolve().is_relative_to(root):
                nodes = _deployment_nodes(path)
                if nodes is not None:
                    return FoundRecipe(name, path, place, nodes)
    for path in RecipeFinder(None).candidates(name):
        nodes = _deployment_nodes(path)
        if nodes is not None:
            return FoundRecipe(name, path, places[0] if places else None, nodes)
    known = set(RecipeFinder(None).names())
    for place in places:
        known.update(RecipeFinder(place).names())
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    raise UnknownRecipe(name, close[0] if close else None)


def _deployment_nodes(path: Path) -> tuple[str, ...] | None:
    """The node names of a deployment file; None for any other kind of recipe. A file that
    does not parse counts (without nodes): deploying it reports its problems."""
    try:
        doc = parse_file(path)
    except RecipeInvalid:
        return ()
    kind = doc.get("kind")
    if kind is None or kind.value != "deployment":
        return None
    nodes = doc.get("nodes")
    if nodes is None or not isinstance(nodes.value, dict):
        return ()
    return tuple(str(k) for k in nodes.value)
