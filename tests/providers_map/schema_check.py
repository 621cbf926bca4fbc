"""Check a Terraform JSON root against provider schema snapshots (see ``schema_snapshot``).

What ``terraform validate`` would say about names, without the providers: every resource
and data source type exists; every argument and block is one the type has, recursively into
nested blocks (a block may be written as an object or a list of objects); every required
argument and block is there; ``lifecycle.ignore_changes`` names arguments the type has; and
the provider blocks only use the provider's arguments. Values are not checked.

Example:
    >>> schema = {"resources": {"x_box": {"required": ["size"], "optional": ["name"]}},
    ...           "data_sources": {}, "provider_config": {}}
    >>> for line in problems({"resource": {"x_box": {"a": {"nmae": "b"}}}}, {"x": schema}):
    ...     print(line)
    resource.x_box.a: unknown argument or block `nmae` (did you mean `name`?)
    resource.x_box.a: missing required argument `size`
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from typing import Any

from tests.providers_map.schema_snapshot import SCHEMAS

# Terraform's own arguments of every resource and data source.
META = {
    "resource": {
        "count",
        "for_each",
        "depends_on",
        "lifecycle",
        "provider",
        "provisioner",
        "connection",
    },
    "data": {"count", "for_each", "depends_on", "provider", "lifecycle"},
}
# Types that belong to Terraform itself, not to a provider.
BUILT_IN = {"terraform_data", "terraform_remote_state"}


@cache
def snapshot(name: str) -> dict[str, Any]:
    """The schema snapshot of provider ``name`` (``aws``, ``azurerm``, …)."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def problems(doc: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    """Everything in ``doc`` the schemas (provider local name → snapshot) do not allow."""
    found: list[str] = []
    for section, kind in (("resource", "resources"), ("data", "data_sources")):
        for type_name, named in (doc.get(section) or {}).items():
            if type_name in BUILT_IN:
                continue
            provider = type_name.split("_", 1)[0]
            schema = schemas.get(provider)
            where = f"{section}.{type_name}"
            if schema is None:
                found.append(f"{where}: no schema snapshot for provider `{provider}`")
                continue
            types = schema[kind]
            if type_name not in types:
                found.append(
                    f"{where}: unknown {kind[:-1].replace('_', ' ')} type{_hint(type_name, types)}"
                )
                continue
            for name, body in named.items():
                found += _body(f"{where}.{name}", body, types[type_name], META[section])
    for provider, config in (doc.get("provider") or {}).items():
        if provider in schemas:
            for body in config if isinstance(config, list) else [config]:
                found += _block(f"provider.{provider}", body, schemas[provider]["provider_config"])
    return found


def _body(where: str, body: Any, schema: dict[str, Any], meta: set[str]) -> list[str]:
    if not isinstance(body, dict):
        return [f"{where}: expected an object"]
    found = _block(where, {k: v for k, v in body.items() if k not in meta}, schema)
    known = _names(schema)
    ignored = (body.get("lifecycle") or {}).get("ignore_changes") or []
    for entry in ignored if isinstance(ignored, list) else []:
        first = str(entry).split(".")[0].split("[")[0]
        if first not in known:
            found.append(f"{where}: lifecycle.ignore_changes names unknown `{first}`")
    return found


def _names(schema: dict[str, Any]) -> set[str]:
    return {*schema.get("required", []), *schema.get("optional", []), *schema.get("blocks", {})}


def _block(where: str, body: Any, schema: dict[str, Any]) -> list[str]:
    if isinstance(body, list):
        return [p for i, item in enumerate(body) for p in _block(f"{where}[{i}]", item, schema)]
    if not isinstance(body, dict):
        return [f"{where}: expected an object"]
    known = _names(schema)
    found = [
        f"{where}: unknown argument or block `{key}`{_hint(key, known)}"
        for key in body
        if key not in known
    ]
    found += [
        f"{where}: missing required argument `{name}`"
        for name in schema.get("required", [])
        if name not in body
    ]
    for name, nested in schema.get("blocks", {}).items():
        if name not in body:
            if nested.get("min"):
                found.append(f"{where}: missing required block `{name}`")
            continue
        if isinstance(body[name], dict | list):
            found += _block(f"{where}.{name}", body[name], nested)
    return found


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""
