"""Apache CloudStack through the ``cloudstack/cloudstack`` provider.

Per node: a ``cloudstack_security_group`` and one ``cloudstack_security_group_rule`` that
lets the component's ports (plus SSH) in, and a ``cloudstack_instance`` with ``for_each``
over instance indices in the cloud's ``zone``, from the catalog's template (found by name
among the executable templates), with the agent bootstrap as user data (the provider
encodes it) and our labels as tags; destroyed instances are expunged. Service offerings
are named per cloud: the size table's names (``small`` …) unless the cloud's
``service_offerings`` setting renames them. Credentials come from
``CLOUDSTACK_API_URL`` / ``CLOUDSTACK_API_KEY`` / ``CLOUDSTACK_SECRET_KEY``.

Security groups need a basic zone or an advanced zone with security groups; set
``network_id`` for an advanced zone network.

Snapshots are not offered: the provider registers templates from URLs only, never from a
virtual machine.

No cdktf package carries this provider's schema. Each resource follows the provider's
documentation (``website/docs/r/instance.html.markdown``, ``r/security_group``,
``r/security_group_rule``, ``d/template``) and source
(``cloudstack/resource_cloudstack_instance.go``: ``tags``, ``ip_address``) of the 0.4/0.5
releases, hence the ``>= 0.4, < 1.0`` pin.

Example:
    >>> MAPPING.instance_resource
    'cloudstack_instance'
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
from providers_map.size import SIZES

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
INSTANCE = "cloudstack_instance"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["zone"],
    "additionalProperties": False,
    "properties": {
        "zone": _STRING,
        "network_id": _STRING,
        "project": _STRING,
        "keypair": _STRING,
        "template_filter": {
            "enum": ["featured", "self", "selfexecutable", "sharedexecutable", "executable"]
        },
        "service_offerings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {size: _STRING for size in SIZES},
        },
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "service_offering": _STRING,
        "root_disk_gb": {"type": "integer", "minimum": 1},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class CloudStackMapping(CloudMapping):
    """CloudStack instances, one security group per node."""

    type = "cloudstack"
    instance_resource = INSTANCE
    cannot_snapshot: ClassVar[str] = (
        "the CloudStack provider registers templates from URLs only, not from instances"
    )
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "CloudStack", root, p)
            reasons += no_machine_type(self.type, "CloudStack", p, "service_offering")
            reasons += reserved_labels(p, "tags")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        project = {"project": escape(str(settings["project"]))} if "project" in settings else {}
        return {
            **header(root, "cloudstack", "cloudstack/cloudstack", ">= 0.4, < 1.0"),
            "provider": {"cloudstack": {}},
            "variable": VARIABLES,
            "data": {
                "cloudstack_template": {
                    image_data_name(i): {
                        "template_filter": escape(
                            str(settings.get("template_filter", "executable"))
                        ),
                        "filter": [
                            {
                                "name": "name",
                                "value": escape(
                                    str(image_lookup(self.type, i, dict(settings))["name"])
                                ),
                            }
                        ],
                    }
                    for i in images
                }
            },
            "resource": {
                "cloudstack_security_group": {
                    name: {
                        "name": f"{escape(root.deployment)}-{p.node}-${{var.run_id}}",
                        "description": f"slipstream {escape(root.deployment)} {p.node}",
                        **project,
                    }
                    for name, p in nodes
                },
                "cloudstack_security_group_rule": {
                    name: {
                        "security_group_id": f"${{cloudstack_security_group.{name}.id}}",
                        "rule": [
                            {
                                "cidr_list": ["0.0.0.0/0"],
                                "protocol": "tcp",
                                "ports": [str(port) for port in firewall_ports(p)],
                                "traffic_type": "ingress",
                            }
                        ],
                        **project,
                    }
                    for name, p in nodes
                },
                INSTANCE: {name: self._instance(root, name, p) for name, p in nodes},
            },
            "output": instances_output(INSTANCE, root.placements, address="r.ip_address"),
        }

    def _instance(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        named = (settings.get("service_offerings") or {}).get(p.size.name or "")
        offering = overrides.get("service_offering") or named or machine_type(self.type, p.size)
        instance: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "display_name": f"{escape(root.deployment)} {p.node} ${{each.key}}",
            "zone": escape(str(settings["zone"])),
            "service_offering": escape(str(offering)),
            "template": f"${{data.cloudstack_template.{image_data_name(p.image)}.id}}",
            "root_disk_size": int(overrides.get("root_disk_gb", p.size.disk_gb)),
            "security_group_ids": [f"${{cloudstack_security_group.{name}.id}}"],
            "user_data": user_data(),
            "tags": instance_labels(root, p, overrides.get("tags")),
            "expunge": True,
            # A newer template or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["template", "user_data"]},
        }
        for key in ("network_id", "keypair", "project"):
            if key in settings:
                instance[key] = escape(str(settings[key]))
        return instance


MAPPING = CloudStackMapping()
