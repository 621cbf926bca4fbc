"""Single-component runs (SlipStream's ``Run`` type): deploy one component without writing a
deployment.

:func:`load_run` answers what ``slipstream deploy REF`` deploys: a deployment file or name
as always, or, when ``REF`` names a component, a one-node deployment synthesised for it.
The node is named after the component; its inputs come from their defaults and from
``--input KEY=VALUE`` (the component's own inputs: there are no deployment inputs);
``--cloud NAME=CLOUD`` and ``--multiplicity NAME=N`` work as for any node. An input without
a default must be given, with the usual ``file:line:column``-style error.

Example:
    >>> from engine.recipes.clouds import CloudsConfig
    >>> from engine.recipes.loader import RecipeLoader
    >>> dep = load_run(RecipeLoader(None, CloudsConfig.default()), "webapp-db")
    >>> dep.name, list(dep.nodes), dep.nodes["webapp-db"].multiplicity
    ('webapp-db', ['webapp-db'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from engine.recipes.loader import RecipeLoader
from engine.recipes.model import Deployment
from engine.recipes.overrides import Overrides
from engine.recipes.yamlsrc import parse_text


def names_component(loader: RecipeLoader, ref: str | Path) -> bool:
    """Whether ``ref`` is the name of a component (not a path, not a deployment)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return False
    for candidate in loader.finder.candidates(str(ref)):
        doc = loader.read(candidate)
        kind = doc.get("kind") if doc is not None else None
        if kind is not None and kind.value == "deployment":
            return False
        if kind is not None and kind.value == "component":
            return True
    return False


def load_run(
    loader: RecipeLoader,
    ref: str | Path,
    overrides: Overrides | None = None,
    require_values: bool = False,
) -> Deployment:
    """The deployment ``slipstream deploy REF`` runs (RecipeInvalid with every problem)."""
    if not names_component(loader, ref):
        return loader.deployment(ref, overrides, require_values)
    name = str(ref)
    overrides = overrides or Overrides()
    # A single component's inputs are its node's: `--input k=v` means `--input NAME:k=v`.
    node_inputs: dict[str, Mapping[str, str]] = {
        name: {**overrides.inputs, **overrides.node_inputs.get(name, {})}
    }
    node_inputs.update({k: v for k, v in overrides.node_inputs.items() if k != name})
    as_node = replace(overrides, inputs={}, node_inputs=node_inputs)
    text = (
        "kind: deployment\n"
        f"name: {name}\n"
        f"description: single-component run of `{name}`\n"
        "nodes:\n"
        f"  {name}:\n"
        f"    component: {name}\n"
    )
    doc = parse_text(text, f"(single-component run of {name})")
    dep = loader._build_deployment(doc, as_node, require_values)
    if loader.problems or dep is None:
        from engine.errors import Mark, Problem, RecipeInvalid

        raise RecipeInvalid(loader.problems or [Problem(Mark(name, 0, 0), "not loaded")])
    return replace(dep, source=str(loader.files.get(name, name)))
