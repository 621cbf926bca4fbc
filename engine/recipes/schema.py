"""JSON Schema (draft-07) of recipe files: the one description of their structure.

The loader checks structure against these schemas (then checks meaning in code), and
``slipstream schema`` prints :func:`recipe_schema` for editors.

Example:
    >>> recipe_schema()["definitions"]["component"]["required"]
    ['kind', 'name', 'image']
"""

from __future__ import annotations

from typing import Any

# Instances of one node, in a recipe or from --multiplicity: one limit for both.
MAX_MULTIPLICITY = 10_000
#: Cloud names (folders and Terraform roots are named after them: lowercase only).
NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
#: Component, deployment and node names: SlipStream users wrote `procSAR`, `torque_master`.
RECIPE_NAME_RE = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
PARAM_RE = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
FROM_RE = (
    r"^(input:[A-Za-z][A-Za-z0-9_.-]{0,127}"
    r"|[A-Za-z][A-Za-z0-9_-]{0,62}(\.[1-9][0-9]{0,5})?:[A-Za-z][A-Za-z0-9_.-]{0,127})$"
)
PACKAGE_RE = r"^[A-Za-z0-9][A-Za-z0-9+._:@=~-]{0,127}$"
DURATION_RE = r"^[1-9][0-9]{0,6}(s|m|h|d)?$"

SCRIPT_NAMES = (
    "pre_install",
    "post_install",
    "deployment",
    "reporting",
    "on_vm_add",
    "on_vm_remove",
    "pre_scale",
    "post_scale",
)
INSTALL_SCRIPTS = ("pre_install", "post_install")
SIZE_NAMES = ("small", "medium", "large", "xlarge")
INPUT_TYPES = ("string", "int", "bool", "enum")
KEEP_RUNNING = ("always", "on-success", "on-error", "never")

# Human wording for pattern failures, keyed by the pattern itself.
PATTERN_HELP = {
    NAME_RE: "a name of lowercase letters, digits and '-', starting with a letter, at most 63 long",
    RECIPE_NAME_RE: (
        "a name of letters, digits, '_' and '-', starting with a letter, at most 63 long"
    ),
    PARAM_RE: "a parameter name of letters, digits, '_', '.' and '-', starting with a letter",
    FROM_RE: "`node:parameter`, `node.N:parameter` or `input:name`",
    PACKAGE_RE: "a package name (letters, digits and + . _ : @ = ~ -)",
    DURATION_RE: "a duration such as 90s, 30m, 2h or 1d",
}

_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}


def _name(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": RECIPE_NAME_RE, "description": description}


def _input_spec(deployment: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "description": {"type": "string"},
        "default": _SCALAR,
        "type": {"enum": list(INPUT_TYPES), "description": "value type (default: string)"},
        "choices": {"type": "array", "items": _SCALAR, "minItems": 1},
        "sensitive": {"type": "boolean", "description": "never shown in logs, events or chat"},
        "optional": {
            "type": "boolean",
            "description": "with no default and no mapping, the value is empty instead of an error",
        },
    }
    if deployment:
        props["locked"] = {"type": "boolean", "description": "refuse deploy-time overrides"}
    return {"type": ["object", "null"], "properties": props, "additionalProperties": False}


def _params(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": PARAM_RE},
        "additionalProperties": spec,
    }


COMPONENT: dict[str, Any] = {
    "type": "object",
    "description": "What runs on one machine.",
    "required": ["kind", "name", "image"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "component"},
        "name": _name("component name; the file is found by it"),
        "description": {"type": "string"},
        "image": {
            "type": "string",
            "minLength": 1,
            "description": "a native image (ubuntu-22.04, …) or a parent component",
        },
        "size": {
            "description": "small|medium|large|xlarge or {cpu, ram_gb, disk_gb}",
            "oneOf": [
                {"type": "string", "enum": list(SIZE_NAMES)},
                {
                    "type": "object",
                    "required": ["cpu", "ram_gb"],
                    "additionalProperties": False,
                    "properties": {
                        "cpu": {"type": "integer", "minimum": 1, "maximum": 1024},
                        "ram_gb": {"type": "number", "exclusiveMinimum": 0, "maximum": 65536},
                        "disk_gb": {"type": "integer", "minimum": 1, "maximum": 65536},
                    },
                },
            ],
        },
        "ports": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 65535},
            "uniqueItems": True,
        },
        "packages": {"type": "array", "items": {"type": "string", "pattern": PACKAGE_RE}},
        "scripts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: {"type": "string"} for name in SCRIPT_NAMES},
        },
        "inputs": _params(_input_spec(deployment=False)),
        "outputs": _params(
            {
                "type": ["object", "null"],
                "properties": {
                    "description": {"type": "string"},
                    "default": {**_SCALAR, "description": "the value until an instance sets it"},
                },
                "additionalProperties": False,
            }
        ),
        "clouds": {
            "type": "object",
            "description": "per-cloud overrides (by cloud type or cloud name)",
            "propertyNames": {"pattern": NAME_RE},
            "additionalProperties": {"type": "object"},
        },
    },
}

NODE: dict[str, Any] = {
    "type": "object",
    "required": ["component"],
    "additionalProperties": False,
    "properties": {
        "component": _name("the component this node runs"),
        "cloud": {
            "description": "a cloud name, or a list spreading instances round-robin",
            "oneOf": [
                {"type": "string", "pattern": NAME_RE},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": NAME_RE},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            ],
        },
        "multiplicity": {"type": "integer", "minimum": 0, "maximum": MAX_MULTIPLICITY},
        "max_failures": {"type": "integer", "minimum": 0},
        "inputs": _params(
            {
                "description": "a literal, or {from: node:parameter | input:name}",
                "oneOf": [
                    _SCALAR,
                    {
                        "type": "object",
                        "required": ["from"],
                        "additionalProperties": False,
                        "properties": {"from": {"type": "string", "pattern": FROM_RE}},
                    },
                ],
            }
        ),
    },
}

DEPLOYMENT: dict[str, Any] = {
    "type": "object",
    "description": "Several components wired together.",
    "required": ["kind", "name", "nodes"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "deployment"},
        "name": _name("deployment name"),
        "description": {"type": "string"},
        "inputs": _params(_input_spec(deployment=True)),
        "keep_running": {"enum": list(KEEP_RUNNING)},
        "timeout": {
            "description": "abort a run stuck in one state this long (90s, 30m, 2h)",
            "oneOf": [
                {"type": "string", "pattern": DURATION_RE},
                {"type": "integer", "minimum": 1},
            ],
        },
        "scalable": {"type": "boolean"},
        "nodes": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": RECIPE_NAME_RE},
            "additionalProperties": NODE,
        },
    },
}


def recipe_schema() -> dict[str, Any]:
    """The draft-07 schema of a recipe file (component or deployment)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://slipstream.invalid/schema/recipe.json",
        "title": "SlipStream recipe",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": ["component", "deployment"]}},
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": "component"}}},
                "then": {"$ref": "#/definitions/component"},
            },
            {
                "if": {"properties": {"kind": {"const": "deployment"}}},
                "then": {"$ref": "#/definitions/deployment"},
            },
        ],
        "definitions": {"component": COMPONENT, "deployment": DEPLOYMENT},
    }
