"""What a runtime parameter key means, and who may read or set it (DESIGN section 4).

Keys are ``node.i:name`` (an instance's), ``node:name`` and ``ss:name`` (run-wide). They
are qualified the way SlipStream's client did (``Client._qualifyKey`` in
slipstream/SlipStreamClient): a bare key is the caller's own (``db_url`` is
``web.2:db_url`` for ``web.2``), ``node:name`` means ``node.1:name``, and only
``multiplicity`` and ``ids`` stay node-wide (a bare ``multiplicity`` is the caller's
node's). An input mapped from another node's parameter reads that parameter, following
chains of inputs mapped to inputs; its value is also copied under the input's own key, so
listings show it where SlipStream showed it. Pure functions over the run spec.

Example:
    >>> parse_key("web.2:url"), parse_key("web:ids"), parse_key("ss:state")
    (('web', 2, 'url'), ('web', 0, 'ids'), ('ss', 0, 'state'))
    >>> qualify("web.2", "apache:hostname"), qualify("web.2", "multiplicity")
    ('apache.1:hostname', 'web:multiplicity')
    >>> spec = {"nodes": {"web": {"multiplicity": 2, "component": "w", "outputs": ["url"],
    ...                           "inputs": {"db_url": {"from": "db.1:url"}}}}}
    >>> readable(spec, "web.2", "db_url"), settable(spec, "web.2", "url")
    ('db.1:url', 'web.2:url')
    >>> mapped_copies(spec)
    {'db.1:url': ['web.1:db_url', 'web.2:db_url']}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.builtins import INSTANCE_BUILTINS, SETTABLE_BUILTINS
from engine.coordination.refusals import BadRequest, Forbidden, NotFound

RUN_KEYS = ("state", "abort", "category", "url.service")
NODE_KEYS = ("multiplicity", "ids")
_NODE = r"[A-Za-z][A-Za-z0-9_-]{0,62}"
_KEY = re.compile(rf"^({_NODE})(?:\.([1-9][0-9]{{0,5}}))?:([A-Za-z][A-Za-z0-9_.-]{{0,127}})$")


def parse_key(key: str) -> tuple[str, int, str]:
    """(node or ``ss``, instance index or 0 for node-wide, name); ValueError when malformed."""
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"malformed key `{key}`")
    return match.group(1), int(match.group(2) or 0), match.group(3)


def qualify(caller: str, key: str) -> str:
    """The full key SlipStream's client made of ``key`` for instance ``caller``."""
    if ":" not in key:
        node = caller.partition(".")[0]
        return f"{node}:{key}" if key in NODE_KEYS else f"{caller}:{key}"
    head, _, name = key.partition(":")
    if head == "ss" or "." in head or name in NODE_KEYS:
        return key
    return f"{head}.1:{name}"


def full_key(caller: str, key: str) -> tuple[str, tuple[str, int, str]]:
    """A key qualified for ``caller``, and its parsed parts."""
    key = qualify(caller, key)
    try:
        return key, parse_key(key)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def node_of(spec: Mapping[str, Any], node: str, key: str) -> dict[str, Any]:
    """The spec of ``node``; NotFound (naming ``key``) when the run has no such node."""
    nodes: dict[str, Any] = spec["nodes"]
    if node not in nodes:
        raise NotFound(f"`{key}`: unknown node `{node}`")
    body: dict[str, Any] = nodes[node]
    return body


def readable(spec: Mapping[str, Any], caller: str, key: str) -> str:
    """The stored key a read of ``key`` by ``caller`` means (mapped inputs followed)."""
    key, (head, index, name) = full_key(caller, key)
    if head == "ss":
        if index or name not in RUN_KEYS:
            raise NotFound(f"unknown run parameter `{key}`")
        return key
    node = node_of(spec, head, key)
    if index == 0:
        if name not in NODE_KEYS:
            raise NotFound(
                f"unknown node parameter `{key}` (node parameters: {', '.join(NODE_KEYS)})"
            )
        return key
    if index > highest_index(node):
        raise NotFound(f"`{key}`: node `{head}` has {node['multiplicity']} instance(s)")
    if (
        name not in node["inputs"]
        and name not in node["outputs"]
        and name not in INSTANCE_BUILTINS
        and not name.startswith("url.")
    ):
        raise NotFound(f"`{key}`: component `{node['component']}` declares no `{name}`")
    return source_of(spec, key)


def live_indices(body: Mapping[str, Any]) -> list[int]:
    """The indices of a node's live instances: ``ids`` once the run was scaled (indices
    are never reused, so they may have gaps), else 1..multiplicity.

    >>> live_indices({"multiplicity": 2}), live_indices({"multiplicity": 3, "ids": [1, 2, 4]})
    ([1, 2], [1, 2, 4])
    """
    if "ids" in body:
        return [int(i) for i in body["ids"]]
    return list(range(1, int(body["multiplicity"]) + 1))


def highest_index(body: Mapping[str, Any]) -> int:
    """The highest index a node's instances ever had (the values of removed instances
    stay readable).

    >>> highest_index({"multiplicity": 2}), highest_index({"multiplicity": 1, "top": 5})
    (2, 5)
    """
    return int(body.get("top", body["multiplicity"]))


def source_of(spec: Mapping[str, Any], key: str) -> str:
    """Where the value of ``key`` comes from: itself, or the end of its chain of mappings.

    >>> spec = {"nodes": {"a": {"inputs": {"x": {"from": "b.1:y"}}},
    ...                   "b": {"inputs": {"y": {"from": "c.1:out"}}}}}
    >>> source_of(spec, "a.2:x")
    'c.1:out'
    """
    seen = {key}
    while True:
        head, _, name = key.partition(":")
        body = spec["nodes"].get(head.partition(".")[0])
        binding = body["inputs"].get(name) if body is not None else None
        if binding is None or "from" not in binding:
            return key
        key = str(binding["from"])
        if key in seen:  # the loader refuses loops; stop rather than spin on an old spec
            return key
        seen.add(key)


def mapped_copies(spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """Source key → the mapped input keys that take its value, instance by instance."""
    copies: dict[str, list[str]] = {}
    for node, body in spec["nodes"].items():
        for name, binding in body["inputs"].items():
            if "from" not in binding:
                continue
            for index in live_indices(body):
                target = f"{node}.{index}:{name}"
                copies.setdefault(source_of(spec, target), []).append(target)
    return copies


def with_copies(copies: Mapping[str, list[str]], values: Mapping[str, str]) -> dict[str, str]:
    """``values`` plus the same value under every input mapped to one of them.

    >>> with_copies({"db.1:url": ["web.1:db_url"]}, {"db.1:url": "pg://db"})
    {'db.1:url': 'pg://db', 'web.1:db_url': 'pg://db'}
    """
    out = dict(values)
    for key, value in values.items():
        for target in copies.get(key, ()):
            out[target] = value
    return out


def settable(spec: Mapping[str, Any], caller: str, key: str) -> str:
    """The stored key ``caller`` may set for ``key``; Forbidden otherwise."""
    key, (head, index, name) = full_key(caller, key)
    if head == "ss":
        if name == "url.service" and not index:
            return key
        raise Forbidden(f"`{key}` is not settable by an instance")
    if f"{head}.{index}" != caller:
        raise Forbidden(f"`{key}` belongs to another instance; `{caller}` sets only its own")
    node = node_of(spec, head, key)
    if name in node["outputs"] or name in SETTABLE_BUILTINS or name.startswith("url."):
        return key
    if name in node["inputs"]:
        raise Forbidden(f"`{key}` is an input; only outputs can be set")
    raise Forbidden(f"`{key}`: component `{node['component']}` declares no output `{name}`")
