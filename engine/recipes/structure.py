"""Structural checks of a located YAML tree against a JSON Schema, with readable messages.

jsonschema finds every structural problem at once; this module turns each into a
:class:`Problem` at the exact ``file:line:column`` of the offending key or value.

Example:
    >>> from engine.recipes.yamlsrc import parse_text
    >>> doc = parse_text("a: 1\\nb: x\\n", "f.yaml")
    >>> schema = {"type": "object", "properties": {"a": {"type": "integer"}},
    ...           "additionalProperties": False}
    >>> [str(p) for p in check(doc, schema)]
    ['f.yaml:2:1: unknown key `b` (expected: a)']
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from engine.errors import Mark, Problem
from engine.recipes.schema import PATTERN_HELP
from engine.recipes.yamlsrc import Located

# Where rfc3987_syntax is installed (Jupyter's packages bring it), importing jsonschema
# imports it to check the `iri` format, and it builds a grammar then: seconds on every
# command that loads a recipe. Our schemas check no format: jsonschema is imported
# without it, and the module stays importable for whoever wants it later.
_SKIPPED = "rfc3987_syntax" not in sys.modules
if _SKIPPED:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
try:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import ValidationError
finally:
    if _SKIPPED:
        del sys.modules["rfc3987_syntax"]

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


# Keyed by id(); the schema is kept alongside so that id stays its own.
_VALIDATORS: dict[int, tuple[dict[str, Any], Draft7Validator]] = {}


def _validator(schema: dict[str, Any]) -> Draft7Validator:
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, Draft7Validator(schema))
        _VALIDATORS[id(schema)] = entry
    return entry[1]


def check(doc: Located, schema: dict[str, Any]) -> list[Problem]:
    """Every structural problem of ``doc`` against ``schema``, located and worded."""
    validator = _validator(schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(doc.plain()):
        problems.extend(_explain(doc, error))
    return problems


def describe(value: Any) -> str:
    """How a value's type is called in messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _at(doc: Located, path: Iterable[Any]) -> Located:
    node = doc
    for part in path:
        if (isinstance(node.value, dict) and part in node.value) or (
            isinstance(node.value, list) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
    return node


def _where(path: Iterable[Any]) -> str:
    parts = [f"[{p + 1}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "document"


def _types(schema_type: Any) -> str:
    names = schema_type if isinstance(schema_type, list) else [schema_type]
    words = [_TYPE_WORDS.get(str(n), str(n)) for n in names if n != "null"]
    return " or ".join(words)


def _explain(doc: Located, error: ValidationError) -> list[Problem]:
    # jsonschema types these attributes loosely (they may be "unset"); here they are set.
    schema: Any = error.schema
    value: Any = error.validator_value
    instance: Any = error.instance
    path = list(error.absolute_path)
    node = _at(doc, path)
    where = _where(path)
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = [k for k in instance if k not in allowed]
        hint = f" (expected: {', '.join(allowed)})" if allowed else ""
        return [Problem(node.key_mark(k), f"unknown key `{k}`{hint}") for k in extra]
    if kind == "required":
        missing = [k for k in value if k not in instance]
        return [Problem(node.mark, f"{where}: missing required key `{k}`") for k in missing]
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key as a failure of the key's own sub-schema.
        bad = instance
        pattern = str(value) if kind == "pattern" else ""
        mark = node.key_mark(bad) if isinstance(bad, str) else node.mark
        return [Problem(mark, f"bad name `{bad}`: expected {PATTERN_HELP.get(pattern, pattern)}")]
    if kind == "type":
        return [
            Problem(
                node.mark,
                f"{where}: expected {_types(value)}, got {describe(instance)}",
            )
        ]
    if kind in ("enum", "const"):
        options = value if kind == "enum" else [value]
        shown = ", ".join(str(o) for o in options)
        return [Problem(node.mark, f"{where}: `{node.as_text()}` is not one of: {shown}")]
    if kind == "pattern":
        help_text = PATTERN_HELP.get(str(value), str(value))
        return [Problem(node.mark, f"{where}: bad value `{node.as_text()}`: expected {help_text}")]
    if kind in ("minimum", "maximum", "exclusiveMinimum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}[kind]
        return [Problem(node.mark, f"{where}: must be {word} {value}, got {node.as_text()}")]
    if kind == "minItems":
        return [Problem(node.mark, f"{where}: must not be empty")]
    if kind == "minProperties":
        return [Problem(node.mark, f"{where}: must not be empty")]
    if kind == "uniqueItems":
        return [Problem(node.mark, f"{where}: items must not repeat")]
    if kind == "minLength":
        return [Problem(node.mark, f"{where}: must not be empty")]
    if kind in ("oneOf", "anyOf"):
        return _explain_choice(doc, error, where, node)
    return [Problem(node.mark, f"{where}: {error.message}")]


def _explain_choice(
    doc: Located, error: ValidationError, where: str, node: Located
) -> list[Problem]:
    """For `a or b` schemas, report the branch whose type matched, else both types."""
    branches: dict[str | int, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    typed = [
        errs
        for errs in branches.values()
        if not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    if len(typed) == 1:
        out: list[Problem] = []
        for sub in typed[0]:
            out.extend(_explain(doc, sub))
        return out
    options: Any = error.validator_value
    words = []
    for option in options:
        if "enum" in option:
            words.append(" | ".join(str(v) for v in option["enum"]))
        elif option.get("type") == "object":
            keys = ", ".join(option.get("properties", {}))
            words.append(f"{{{keys}}}")
        elif "type" in option:
            words.append(_types(option["type"]))
    return [
        Problem(node.mark, f"{where}: expected {' or '.join(words)}, got {describe(node.value)}")
    ]


def problem_at(node: Located | None, fallback: Mark, message: str) -> Problem:
    """A problem at ``node``'s position, or at ``fallback`` when the node is absent."""
    return Problem(node.mark if node else fallback, message)
