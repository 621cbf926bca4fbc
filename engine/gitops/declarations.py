"""``slipstream.yaml``: the deployments a repository declares, checked like recipes.

Raw, then valid: the file is parsed with positions (:mod:`engine.recipes.yamlsrc`), its
structure checked against :data:`DECLARATIONS_SCHEMA` (every problem at once, each at its
``file:line:column``), then turned into frozen :class:`Declaration` values.

Example:
    >>> text = '''
    ... deployments:
    ...   hello:
    ...     recipe: apps/hello.yaml
    ...     inputs: {greeting: hi}
    ...     apply: approve
    ... '''
    >>> [d.name for d in parse_declarations(text)], parse_declarations(text)[0].apply
    (['hello'], 'approve')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from engine.errors import Mark, Problem, RecipeInvalid
from engine.recipes.overrides import Overrides
from engine.recipes.schema import NAME_RE, PARAM_RE, PATTERN_HELP, RECIPE_NAME_RE
from engine.recipes.structure import check
from engine.recipes.yamlsrc import Located, parse_file, parse_text

FILE = "slipstream.yaml"
_INPUT_KEY = r"^([A-Za-z][A-Za-z0-9_-]{0,62}:)?[A-Za-z][A-Za-z0-9_.-]{0,127}$"
_RECIPE = r"^([A-Za-z][A-Za-z0-9_-]{0,62}|[A-Za-z0-9_][A-Za-z0-9_./-]{0,250}\.ya?ml)$"
PATTERN_HELP.setdefault(_INPUT_KEY, "an input name, or `node:input` for one node's input")
PATTERN_HELP.setdefault(_RECIPE, "a deployment name, or a .yaml path inside the repository")
_CLOUD = {"type": "string", "pattern": NAME_RE}

DECLARATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["recipe"],
    "properties": {
        "recipe": {"type": "string", "pattern": _RECIPE},
        "clouds": {
            "type": "object",
            "propertyNames": {"pattern": RECIPE_NAME_RE},
            "additionalProperties": {
                "oneOf": [_CLOUD, {"type": "array", "items": _CLOUD, "minItems": 1}]
            },
        },
        "inputs": {
            "type": "object",
            "propertyNames": {"pattern": _INPUT_KEY},
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "multiplicity": {
            "type": "object",
            "propertyNames": {"pattern": RECIPE_NAME_RE},
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 10_000},
        },
        "apply": {"enum": ["auto", "approve"]},
        "prune": {"type": "boolean"},
        "approvers": {"type": "array", "items": {"type": "string", "pattern": PARAM_RE}},
    },
}
#: JSON Schema (draft-07) of ``slipstream.yaml``.
DECLARATIONS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "slipstream.yaml: deployments a repository keeps",
    "type": "object",
    "additionalProperties": False,
    "required": ["deployments"],
    "properties": {
        "deployments": {
            "type": "object",
            "propertyNames": {"pattern": RECIPE_NAME_RE},
            "additionalProperties": DECLARATION_SCHEMA,
        }
    },
}


@dataclass(frozen=True, slots=True)
class Declaration:
    """One deployment the repository keeps running."""

    name: str
    recipe: str
    mark: Mark
    clouds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    multiplicity: dict[str, int] = field(default_factory=dict)
    apply: str = "auto"
    prune: bool = False
    approvers: tuple[str, ...] = ()

    @property
    def is_path(self) -> bool:
        return self.recipe.endswith((".yaml", ".yml"))

    def ref(self, root: Path) -> str | Path:
        """What the recipe loader is given: a file of the checkout, or a name."""
        return root.joinpath(*PurePosixPath(self.recipe).parts) if self.is_path else self.recipe

    def overrides(self) -> Overrides:
        node_inputs: dict[str, dict[str, str]] = {}
        inputs: dict[str, str] = {}
        for key, value in self.inputs.items():
            node, sep, name = key.partition(":")
            if sep:
                node_inputs.setdefault(node, {})[name] = value
            else:
                inputs[key] = value
        return Overrides(inputs, self.clouds, self.multiplicity, node_inputs=node_inputs)

    def fingerprint(self) -> str:
        """What of the declaration itself decides the deployment (not its approvers)."""
        doc = [self.recipe, self.clouds, self.inputs, self.multiplicity, self.apply]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_declarations(root: Path) -> list[Declaration]:
    """The declarations of the checkout at ``root`` (none when it has no ``slipstream.yaml``);
    RecipeInvalid with every problem otherwise."""
    path = root / FILE
    if not path.exists():
        return []
    return _declarations(parse_file(path, FILE))


def parse_declarations(text: str, name: str = FILE) -> list[Declaration]:
    """Declarations from the text of a ``slipstream.yaml``."""
    return _declarations(parse_text(text, name))


def _declarations(doc: Located) -> list[Declaration]:
    problems = check(doc, DECLARATIONS_SCHEMA)
    if problems:
        raise RecipeInvalid(problems)
    found: list[Declaration] = []
    deployments = doc.get("deployments")
    assert deployments is not None
    for name, body in deployments.value.items():
        recipe = body.value["recipe"]
        parts = PurePosixPath(recipe.value).parts
        if ".." in parts or recipe.value.startswith("/"):
            problems.append(Problem(recipe.mark, "a recipe path must stay inside the repository"))
            continue
        plain = body.plain()
        clouds = {
            node: (value,) if isinstance(value, str) else tuple(value)
            for node, value in plain.get("clouds", {}).items()
        }
        inputs_node = body.get("inputs")
        inputs = {k: v.as_text() for k, v in inputs_node.value.items()} if inputs_node else {}
        found.append(
            Declaration(
                name=name,
                recipe=recipe.value,
                mark=deployments.key_mark(name),
                clouds=clouds,
                inputs=inputs,
                multiplicity=dict(plain.get("multiplicity", {})),
                apply=plain.get("apply", "auto"),
                prune=bool(plain.get("prune", False)),
                approvers=tuple(plain.get("approvers", ())),
            )
        )
    if problems:
        raise RecipeInvalid(problems)
    return found
