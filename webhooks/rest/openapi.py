"""What the OpenAPI document needs beyond what APIFlask writes from the schemas.

- :class:`DictRules`: a ``Dict`` field documents the rule of its keys (``propertyNames``)
  and its size as a number of properties (apispec documents only its values).
- :func:`require_bodies`: a request body whose schema has required fields is required.
- :func:`merge_duplicates`: a schema both nested and top-level is registered once.

Example:
    >>> spec = {"components": {"schemas": {"A": {"required": ["x"]}}}, "paths": {"/a": {
    ...     "post": {"requestBody": {"content": {"application/json": {"schema": {
    ...         "$ref": "#/components/schemas/A"}}}}}}}}
    >>> require_bodies(spec)["paths"]["/a"]["post"]["requestBody"]["required"]
    True
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.field_converter import FieldConverterMixin
from marshmallow import fields

REF = "#/components/schemas/"


class DictRules(BasePlugin):
    """Documents what ``Dict`` fields check: their keys (``propertyNames``, from the key
    field) and their size (``minProperties``/``maxProperties``, not apispec's
    ``minLength``/``maxLength``)."""

    def init_spec(self, spec: APISpec) -> None:
        for plugin in spec.plugins:
            if isinstance(plugin, MarshmallowPlugin) and plugin.converter is not None:
                plugin.converter.add_attribute_function(dict_rules)  # type: ignore[no-untyped-call]


def dict_rules(
    converter: FieldConverterMixin, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """The attribute function :class:`DictRules` adds (apispec binds it to its converter)."""
    if not isinstance(field, fields.Dict):
        return {}
    for length, count in (("minLength", "minProperties"), ("maxLength", "maxProperties")):
        if length in ret:
            ret[count] = ret.pop(length)
    names = converter.field2property(field.key_field) if field.key_field else {}
    return {"propertyNames": names} if set(names) - {"type"} else {}


def require_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    """Mark each request body whose schema has required fields as required."""
    schemas = spec["components"]["schemas"]
    for operations in spec["paths"].values():
        for operation in operations.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body is None:
                continue
            for media in body["content"].values():
                ref = media["schema"].get("$ref", "")
                if schemas.get(ref.removeprefix(REF), {}).get("required"):
                    body["required"] = True
    return spec


def merge_duplicates(spec: dict[str, Any]) -> dict[str, Any]:
    """Point references to a component registered twice (``User1``, same as ``User``) at
    the first one, and drop the copy. APIFlask registers a schema it meets top-level after
    apispec met it nested once more, under a new name.

    >>> spec = {"components": {"schemas": {"User": {"type": "object"},
    ...                                    "User1": {"type": "object"}}},
    ...         "paths": {"/u": {"$ref": "#/components/schemas/User1"}}}
    >>> merge_duplicates(spec)["paths"], list(spec["components"]["schemas"])
    ({'/u': {'$ref': '#/components/schemas/User'}}, ['User'])
    """
    schemas = spec["components"]["schemas"]
    copies = {}
    for name in list(schemas):
        match = re.fullmatch(r"(.*\D)[0-9]+", name)
        if match and schemas.get(match.group(1)) == schemas[name]:
            copies[REF + name] = REF + match.group(1)
            del schemas[name]

    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: copies.get(v, v) if k == "$ref" else repoint(v) for k, v in node.items()}
        if isinstance(node, list):
            return [repoint(item) for item in node]
        return node

    return dict(repoint(spec)) if copies else spec
