"""Exoscale through the ``exoscale/exoscale`` provider.

Per node: an ``exoscale_security_group`` with one ``exoscale_security_group_rule`` per
port (plus SSH), and an ``exoscale_compute_instance`` with ``for_each`` over instance
indices in the cloud's ``zone``, from the catalog's template (found by name in the zone),
with the agent bootstrap as user data and our labels. Credentials come from
``EXOSCALE_API_KEY`` / ``EXOSCALE_API_SECRET``.

Snapshots are not offered: the provider registers templates from an image URL and its
checksum only, never from an instance.

No cdktf package carries this provider's schema. Each resource follows the provider's
documentation at 0.64–0.65 (``docs/resources/compute_instance.md``: ``disk_size``
required since 0.64.2; ``docs/resources/security_group_rule.md``;
``docs/data-sources/template.md``), hence the ``~> 0.64`` pin.

Example:
    >>> MAPPING.instance_resource
    'exoscale_compute_instance'
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers_map.base import (
    COMMON_VARIABLES,
    CloudMapping,
    CloudRoot,
    NodePlacement,
    escape,
    instance_map,
    instances_output,
    resource_name,
)
from providers_map.bootstrap import AGENT_VARIABLES, user_data
from providers_map.catalog import image_lookup, machine_type
from providers_map.machines import (
    firewall_ports,
    header,
    image_data_name,
    images_setting,
    instance_labels,
    missing_image,
    no_machine_type,
    reserved_labels,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
INSTANCE = "exoscale_compute_instance"

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["zone"],
    "additionalProperties": False,
    "properties": {
        "zone": {"type": "string", "pattern": "^[a-z]{2}-[a-z]{3}-[0-9]$"},
        "ssh_key": {"type": "string", "minLength": 1},
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": "^[a-z0-9]+\\.[a-z0-9-]+$"},
        "disk_gb": {"type": "integer", "minimum": 10},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class ExoscaleMapping(CloudMapping):
    """Exoscale compute instances, one security group per node."""

    type = "exoscale"
    instance_resource = INSTANCE
    cannot_snapshot: ClassVar[str] = (
        "the Exoscale provider registers templates from an image URL only, not from instances"
    )
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "Exoscale", root, p)
            reasons += no_machine_type(self.type, "Exoscale", p, "type")
            reasons += reserved_labels(p, "labels")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        zone = escape(str(settings["zone"]))
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        return {
            **header(root, "exoscale", "exoscale/exoscale", "~> 0.64"),
            "provider": {"exoscale": {}},
            "variable": VARIABLES,
            "data": {
                "exoscale_template": {
                    image_data_name(i): {
                        "zone": zone,
                        "name": escape(str(image_lookup(self.type, i, dict(settings))["name"])),
                    }
                    for i in images
                }
            },
            "resource": {
                "exoscale_security_group": {
                    name: {
                        "name": f"{escape(root.deployment)}-{p.node}-${{var.run_id}}",
                        "description": f"slipstream {escape(root.deployment)} {p.node}",
                    }
                    for name, p in nodes
                },
                "exoscale_security_group_rule": {name: _rules(name, p) for name, p in nodes},
                INSTANCE: {name: self._instance(root, name, p) for name, p in nodes},
            },
            "output": instances_output(INSTANCE, root.placements, address="r.public_ip_address"),
        }

    def _instance(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        kind = overrides.get("type") or machine_type(self.type, p.size)
        instance: dict[str, Any] = {
            "for_each": instance_map(p),
            "zone": escape(str(settings["zone"])),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "type": escape(str(kind)),
            "template_id": f"${{data.exoscale_template.{image_data_name(p.image)}.id}}",
            "disk_size": int(overrides.get("disk_gb", max(10, p.size.disk_gb))),
            "security_group_ids": [f"${{exoscale_security_group.{name}.id}}"],
            "user_data": user_data(),
            "labels": instance_labels(root, p, overrides.get("labels")),
            # A newer template or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["template_id", "user_data"]},
        }
        if "ssh_key" in settings:
            instance["ssh_key"] = escape(str(settings["ssh_key"]))
        return instance


def _rules(name: str, p: NodePlacement) -> dict[str, Any]:
    return {
        "for_each": {str(port): port for port in firewall_ports(p)},
        "security_group_id": f"${{exoscale_security_group.{name}.id}}",
        "type": "INGRESS",
        "protocol": "TCP",
        "cidr": "0.0.0.0/0",
        "start_port": "${each.value}",
        "end_port": "${each.value}",
    }


MAPPING = ExoscaleMapping()
