"""Typed input declarations: parsing specs and checking values against them.

Shared by components (their inputs) and deployments (theirs, which may be ``locked``).

Example:
    >>> spec = InputSpec("workers", type="int", default="4")
    >>> check_value(spec, "x")
    'input `workers` expects a whole number, got `x`'
    >>> check_value(spec, "8") is None
    True
"""

from __future__ import annotations

import dataclasses

from engine.builtins import INSTANCE_BUILTINS as ENGINE_BUILTINS
from engine.errors import Problem
from engine.recipes.model import InputSpec, InputType
from engine.recipes.yamlsrc import Located

#: What the engine sets for every instance; mappings may read them.
INSTANCE_BUILTINS = frozenset(ENGINE_BUILTINS)
RESERVED = INSTANCE_BUILTINS | {"ids", "state", "abort", "category", "complete"}
BOOL_TEXT = {"true": "true", "false": "false"}


def check_value(spec: InputSpec, value: str) -> str | None:
    """Why ``value`` does not fit ``spec``, or None when it does."""
    if spec.type == "int":
        try:
            int(value, 10)
        except ValueError:
            return f"input `{spec.name}` expects a whole number, got `{value}`"
    elif spec.type == "bool":
        if value.lower() not in BOOL_TEXT:
            return f"input `{spec.name}` expects true or false, got `{value}`"
    elif spec.type == "enum" and value not in spec.choices:
        return f"input `{spec.name}` expects one of {', '.join(spec.choices)}, got `{value}`"
    return None


def normalise(spec: InputSpec, value: str) -> str:
    """The canonical text of a checked value (``True`` → ``true``, ``007`` → ``7``)."""
    if spec.type == "bool":
        return value.lower()
    if spec.type == "int":
        return str(int(value, 10))
    return value


def parse_specs(
    section: Located | None, problems: list[Problem], *, deployment: bool
) -> dict[str, InputSpec]:
    """Build input specs from an ``inputs:`` mapping already checked for structure."""
    specs: dict[str, InputSpec] = {}
    if section is None or not isinstance(section.value, dict):
        return specs
    for name, node in section.value.items():
        mark = section.key_mark(name)
        if name in RESERVED:
            problems.append(
                Problem(mark, f"`{name}` is a built-in parameter and cannot be declared")
            )
            continue
        body = node.value if isinstance(node.value, dict) else {}
        kind = str(body["type"].value) if "type" in body else "string"
        choices_node = body.get("choices")
        choices = tuple(c.as_text() for c in choices_node.value) if choices_node else ()
        if kind == "enum" and not choices:
            problems.append(Problem(mark, f"input `{name}` has type enum but no `choices`"))
        if kind != "enum" and choices_node is not None:
            problems.append(
                Problem(choices_node.mark, f"input `{name}`: `choices` needs `type: enum`")
            )
        default_node = body.get("default")
        spec = InputSpec(
            name=name,
            type=_input_type(kind),
            default=default_node.as_text() if default_node is not None else None,
            description=str(body["description"].value) if "description" in body else "",
            choices=choices,
            sensitive=bool(body["sensitive"].value) if "sensitive" in body else False,
            locked=bool(body["locked"].value) if deployment and "locked" in body else False,
            mark=mark,
            optional=bool(body["optional"].value) if "optional" in body else False,
        )
        if default_node is not None and spec.default is not None and (kind != "enum" or choices):
            why = check_value(spec, spec.default)
            if why:
                problems.append(Problem(default_node.mark, f"default: {why}"))
            else:
                spec = _with_default(spec, normalise(spec, spec.default))
        specs[name] = spec
    return specs


def _input_type(kind: str) -> InputType:
    if kind == "int":
        return "int"
    if kind == "bool":
        return "bool"
    if kind == "enum":
        return "enum"
    return "string"


def _with_default(spec: InputSpec, default: str) -> InputSpec:
    return dataclasses.replace(spec, default=default)
