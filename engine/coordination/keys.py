"""What a runtime parameter key means, and who may read or set it (DESIGN section 4).

Keys are ``node.i:name`` (an instance's), ``node:name`` (node-wide: ``multiplicity``,
``ids``) and ``ss:name`` (run-wide). A bare key is the caller's own; an input mapped from
another node reads that node's parameter. Pure functions over the run spec.

Example:
    >>> parse_key("web.2:url"), parse_key("web:ids"), parse_key("ss:state")
    (('web', 2, 'url'), ('web', 0, 'ids'), ('ss', 0, 'state'))
    >>> spec = {"nodes": {"web": {"multiplicity": 2, "component": "w", "outputs": ["url"],
    ...                           "inputs": {"db_url": {"from": "db.1:url"}}}}}
    >>> readable(spec, "web.2", "db_url"), settable(spec, "web.2", "url")
    ('db.1:url', 'web.2:url')
"""

from __future__ import annotations

import re
from typing import Any

from engine.coordination.refusals import BadRequest, Forbidden, NotFound

INSTANCE_BUILTINS = ("hostname", "instanceid", "cloud", "nodename", "id", "statecustom")
SETTABLE_BUILTINS = ("statecustom",)
RUN_KEYS = ("state", "abort", "category", "url.service")
NODE_KEYS = ("multiplicity", "ids")
_KEY = re.compile(
    r"^([a-z][a-z0-9-]{0,62})(?:\.([1-9][0-9]{0,5}))?:([A-Za-z][A-Za-z0-9_.-]{0,127})$"
)


def parse_key(key: str) -> tuple[str, int, str]:
    """(node or ``ss``, instance index or 0 for node-wide, name); ValueError when malformed."""
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"malformed key `{key}`")
    return match.group(1), int(match.group(2) or 0), match.group(3)


def full_key(caller: str, key: str) -> tuple[str, tuple[str, int, str]]:
    """A key with the caller's instance added when bare, and its parsed parts."""
    if ":" not in key:
        key = f"{caller}:{key}"
    try:
        return key, parse_key(key)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def node_of(spec: dict[str, Any], node: str, key: str) -> dict[str, Any]:
    """The spec of ``node``; NotFound (naming ``key``) when the run has no such node."""
    nodes: dict[str, Any] = spec["nodes"]
    if node not in nodes:
        raise NotFound(f"`{key}`: unknown node `{node}`")
    body: dict[str, Any] = nodes[node]
    return body


def readable(spec: dict[str, Any], caller: str, key: str) -> str:
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
    if index > int(node["multiplicity"]):
        raise NotFound(f"`{key}`: node `{head}` has {node['multiplicity']} instance(s)")
    binding = node["inputs"].get(name)
    if binding is not None and "from" in binding:
        return str(binding["from"])
    if (
        binding is None
        and name not in node["outputs"]
        and name not in INSTANCE_BUILTINS
        and not name.startswith("url.")
    ):
        raise NotFound(f"`{key}`: component `{node['component']}` declares no `{name}`")
    return key


def settable(spec: dict[str, Any], caller: str, key: str) -> str:
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
