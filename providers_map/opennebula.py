"""OpenNebula (StratusLab's successor) through the ``OpenNebula/opennebula`` provider.

Per node: an ``opennebula_security_group`` that lets in the component's ports (plus SSH)
and lets everything out (OpenNebula drops what a group does not allow, both ways), and an
``opennebula_virtual_machine`` with ``for_each`` over instance indices: exactly the size's
CPUs and memory, a disk cloned from the catalog's image (found by name in the image
datastores), one NIC on the cloud's ``network`` and the agent bootstrap as the
contextualization start script (``START_SCRIPT_BASE64``, run by one-context at boot).
Credentials come from ``OPENNEBULA_USERNAME`` / ``OPENNEBULA_PASSWORD``; the XML-RPC
``endpoint`` may be set in ``clouds.yaml`` or as ``OPENNEBULA_ENDPOINT``.

Snapshots are not offered: the provider saves no VM disk as an image (``opennebula_image``
only clones images or downloads them).

No cdktf package carries this provider's schema. Each resource follows the provider's
documentation at version 1.1 (``website/docs/r/virtual_machine.html.markdown``,
``security_group.html.markdown``; ``d/image``, ``d/virtual_network``) and its source
(``opennebula/resource_opennebula_virtual_machine.go``: ``ip`` is the primary address),
hence the ``~> 1.1`` pin.

Example:
    >>> MAPPING.instance_resource
    'opennebula_virtual_machine'
    >>> MAPPING.can_snapshot
    False
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
from providers_map.bootstrap import AGENT_VARIABLES, user_data_base64
from providers_map.catalog import image_lookup, machine_shape
from providers_map.machines import (
    firewall_ports,
    header,
    image_data_name,
    images_setting,
    instance_labels,
    labels,
    missing_image,
    reserved_labels,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
VM = "opennebula_virtual_machine"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["network"],
    "additionalProperties": False,
    "properties": {
        "endpoint": {"type": "string", "pattern": "^https?://"},
        "network": _STRING,
        "group": _STRING,
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpu": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024},
        "vcpu": {"type": "integer", "minimum": 1, "maximum": 1024},
        "memory_mb": {"type": "integer", "minimum": 128},
        "disk_mb": {"type": "integer", "minimum": 1024},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class OpenNebulaMapping(CloudMapping):
    """OpenNebula virtual machines, one security group per node."""

    type = "opennebula"
    instance_resource = VM
    cannot_snapshot: ClassVar[str] = (
        "the OpenNebula provider cannot save a virtual machine's disk as an image"
    )
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "OpenNebula", root, p)
            reasons += reserved_labels(p, "tags")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        provider: dict[str, Any] = {}
        if "endpoint" in settings:
            provider["endpoint"] = escape(str(settings["endpoint"]))
        return {
            **header(root, "opennebula", "OpenNebula/opennebula", "~> 1.1"),
            "provider": {"opennebula": provider},
            "variable": VARIABLES,
            "data": {
                "opennebula_image": {
                    image_data_name(i): {
                        "name": escape(str(image_lookup(self.type, i, dict(settings))["name"]))
                    }
                    for i in images
                },
                "opennebula_virtual_network": {"run": {"name": escape(str(settings["network"]))}},
            },
            "resource": {
                "opennebula_security_group": {name: self._group(root, p) for name, p in nodes},
                VM: {name: self._vm(root, name, p) for name, p in nodes},
            },
            "output": instances_output(VM, root.placements, address="r.ip"),
        }

    def _group(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        group: dict[str, Any] = {
            "name": f"{escape(root.deployment)}-{p.node}-${{var.run_id}}",
            "description": f"slipstream {escape(root.deployment)} {p.node}",
            "rule": [
                {"protocol": "TCP", "rule_type": "INBOUND", "range": str(port)}
                for port in firewall_ports(p)
            ]
            + [{"protocol": "ALL", "rule_type": "OUTBOUND"}],
            "tags": labels(root, p, None),
        }
        if "group" in root.settings:
            group["group"] = escape(str(root.settings["group"]))
        return group

    def _vm(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        cpu, ram_gb = machine_shape(self.type, p.size)
        vm: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "cpu": overrides.get("cpu", cpu),
            "vcpu": int(overrides.get("vcpu", cpu)),
            "memory": int(overrides.get("memory_mb", round(ram_gb * 1024))),
            "context": {
                "NETWORK": "YES",
                "SET_HOSTNAME": "$NAME",
                "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]",
                "START_SCRIPT_BASE64": user_data_base64(),
            },
            "disk": [
                {
                    "image_id": f"${{data.opennebula_image.{image_data_name(p.image)}.id}}",
                    "size": int(overrides.get("disk_mb", p.size.disk_gb * 1024)),
                }
            ],
            "nic": [
                {
                    "network_id": "${data.opennebula_virtual_network.run.id}",
                    "security_groups": [f"${{opennebula_security_group.{name}.id}}"],
                }
            ],
            "tags": instance_labels(root, p, overrides.get("tags")),
            # A new server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["context"]},
        }
        if "group" in settings:
            vm["group"] = escape(str(settings["group"]))
        return vm


MAPPING = OpenNebulaMapping()
