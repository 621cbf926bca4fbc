"""An offline, provider-free structural check of a Terraform JSON root, in the spirit of
``terraform validate``: the JSON shape of the top-level blocks, variables and outputs, and
every reference in a live template (``${…}``) pointing at something the root declares.

References checked: ``var.X`` (a declared variable), ``local.X`` (a declared local),
``data.T.N`` and ``T.N`` (a declared data source or resource), ``each.*`` (only inside a
``for_each``), ``count.*`` (only inside a ``count``), ``self.*`` (only in provisioners and
connections). Names bound by ``for`` expressions are local to them. Escaped sequences
(``$${``, ``%%{``) are text and never checked.

Example:
    >>> problems({"variable": {"a": {"type": "string"}},
    ...           "output": {"o": {"value": "${var.b}"}}})
    ['output.o.value: `var.b` is not a declared variable']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

TOP = {
    "//",
    "terraform",
    "provider",
    "variable",
    "locals",
    "data",
    "resource",
    "output",
    "module",
    "moved",
    "import",
    "check",
    "removed",
}
VARIABLE_KEYS = {
    "type",
    "default",
    "description",
    "sensitive",
    "nullable",
    "validation",
    "ephemeral",
}
OUTPUT_KEYS = {"value", "description", "sensitive", "depends_on", "precondition", "ephemeral"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_REF = re.compile(r"(?<![\w.\])])([A-Za-z_][\w-]*)((?:\.[A-Za-z_][\w-]*)+)")
_FOR = re.compile(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b")
_ALWAYS = {"path", "terraform"}


def interpolations(text: str) -> list[str]:
    """The expressions of the live ``${…}``/``%{…}`` sequences of a template string, with
    the literal text of strings inside them blanked (their own live templates kept).

    Example:
        >>> interpolations('$${not} ${merge(a.b, "x.y ${k}")} %%{no}')
        ['merge(a.b, "    ${k}")']
    """
    found: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith(("$${", "%%{"), i):
            i += 3
        elif text.startswith(("${", "%{"), i):
            end, code = _expression(text, i + 2)
            found.append(code)
            i = end + 1
        else:
            i += 1
    return found


def _expression(text: str, i: int) -> tuple[int, str]:
    """From just after ``${`` to its closing ``}``: (index of that brace, expression code)."""
    out: list[str] = []
    stack = ["expr"]
    while i < len(text):
        c, state = text[i], stack[-1]
        if state == "str":
            if c == "\\":
                out.append("  ")
                i += 2
                continue
            if c == '"':
                stack.pop()
                out.append(c)
            elif text.startswith(("$${", "%%{"), i):
                out.append("   ")
                i += 3
                continue
            elif text.startswith(("${", "%{"), i):
                stack.append("expr")
                out.append(text[i : i + 2])
                i += 2
                continue
            else:
                out.append(" ")
        elif c == '"':
            stack.append("str")
            out.append(c)
        elif c == "{":
            stack.append("brace")
            out.append(c)
        elif c == "}":
            stack.pop()
            if not stack:
                return i, "".join(out)
            out.append(c)
        else:
            out.append(c)
        i += 1
    raise ValueError(f"unterminated template in {text[:80]!r}")


def strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a JSON-like ``value`` (keys too), with where it sits."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key, where)
            yield from strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from strings(item, f"{where}[{n}]")


def problems(doc: Any) -> list[str]:
    """Every structural problem of the root ``doc``."""
    if not isinstance(doc, dict):
        return ["document: expected an object"]
    found = [f"{key}: not a top-level block of a Terraform root" for key in doc if key not in TOP]
    variables = _named(doc, "variable", found)
    for name, body in variables.items():
        extra = sorted(set(body) - VARIABLE_KEYS) if isinstance(body, dict) else ["(not an object)"]
        found += [f"variable.{name}: unknown key `{k}`" for k in extra]
    outputs = _named(doc, "output", found)
    for name, body in outputs.items():
        if not isinstance(body, dict) or "value" not in body:
            found.append(f"output.{name}: has no value")
            continue
        found += [f"output.{name}: unknown key `{k}`" for k in sorted(set(body) - OUTPUT_KEYS)]
    locals_ = doc.get("locals") or {}
    declared = {
        section: {t: set(named) for t, named in (doc.get(section) or {}).items()}
        for section in ("resource", "data")
    }
    for section in ("resource", "data"):
        for type_name, named in (doc.get(section) or {}).items():
            if not isinstance(named, dict):
                found.append(f"{section}.{type_name}: expected an object of named blocks")
                continue
            for name, body in named.items():
                where = f"{section}.{type_name}.{name}"
                if not NAME.match(name):
                    found.append(f"{where}: `{name}` is not a valid name")
                if not isinstance(body, dict):
                    found.append(f"{where}: expected an object")
                    continue
                for key, text in strings(body, where):
                    found += _references(key, text, body, variables, locals_, declared)
                for dep in body.get("depends_on") or []:
                    found += _depends(where, dep, declared)
    for section in ("output", "locals", "provider"):
        for key, text in strings(doc.get(section) or {}, section):
            found += _references(key, text, None, variables, locals_, declared)
    return found


def _named(doc: dict[str, Any], section: str, found: list[str]) -> dict[str, Any]:
    named = doc.get(section) or {}
    if not isinstance(named, dict):
        found.append(f"{section}: expected an object")
        return {}
    return named


def _depends(where: str, dep: str, declared: dict[str, dict[str, set[str]]]) -> list[str]:
    parts = dep.split(".")
    if parts[0] == "data" and len(parts) >= 3:
        ok = parts[2] in declared["data"].get(parts[1], set())
    else:
        ok = len(parts) >= 2 and parts[1] in declared["resource"].get(parts[0], set())
    return [] if ok else [f"{where}.depends_on: `{dep}` is not declared"]


def _references(
    where: str,
    text: str,
    body: dict[str, Any] | None,
    variables: dict[str, Any],
    locals_: dict[str, Any],
    declared: dict[str, dict[str, set[str]]],
) -> list[str]:
    found: list[str] = []
    in_self = ".provisioner" in where or ".connection" in where
    for code in interpolations(text):
        bound = {n for pair in _FOR.findall(code) for n in pair if n}
        for root, rest in _REF.findall(code):
            parts = [root, *rest.strip(".").split(".")]
            ref = ".".join(parts[:3] if root == "data" else parts[:2])
            if root in bound or root in _ALWAYS:
                continue
            problem = _resolve(parts, body, in_self, variables, locals_, declared)
            if problem:
                found.append(f"{where}: `{ref}` {problem}")
    return found


def _resolve(
    parts: list[str],
    body: dict[str, Any] | None,
    in_self: bool,
    variables: dict[str, Any],
    locals_: dict[str, Any],
    declared: dict[str, dict[str, set[str]]],
) -> str:
    """Why ``parts`` (a dotted reference) does not resolve; empty when it does."""
    root = parts[0]
    if root == "var":
        return "" if parts[1] in variables else "is not a declared variable"
    if root == "local":
        return "" if parts[1] in locals_ else "is not a declared local value"
    if root == "each":
        return "" if body is not None and "for_each" in body else "is used outside a for_each"
    if root == "count":
        return "" if body is not None and "count" in body else "is used outside a count"
    if root == "self":
        return "" if in_self else "is used outside a provisioner or connection"
    if root == "data":
        if len(parts) < 3:
            return "is not a data source reference"
        known = parts[2] in declared["data"].get(parts[1], set())
        return "" if known else "is not a declared data source"
    if parts[1] in declared["resource"].get(root, set()):
        return ""
    return "is not a declared resource"
