"""IBM Cloud VPC virtual server instances through the ``IBM-Cloud/ibm`` provider.

The machines join the cloud's existing ``vpc`` and ``subnet`` (IDs) in its ``zone``. Per
node: an ``ibm_is_security_group`` with one inbound ``ibm_is_security_group_rule`` per
port (plus SSH) and one outbound rule for everything (a new group lets nothing out), and
an ``ibm_is_instance`` with ``for_each`` over instance indices, from the catalog's stock
image (by name), with the agent bootstrap as user data and our labels as ``key:value``
tags. With ``floating_ip`` (the default) every instance gets an ``ibm_is_floating_ip``,
which becomes its address. Credentials come from ``IC_API_KEY``.

Snapshots are custom images made from the instance's boot volume (``ibm_is_image`` with
``source_volume``); IBM wants the instance stopped first.

No cdktf package carries this provider's schema. Each resource follows the provider's
registry documentation (``website/docs/r/is_instance.html.markdown``: ``keys`` optional,
``primary_network_interface``, ``boot_volume``; ``r/is_security_group_rule``, whose
``tcp`` block later versions keep, deprecated; ``r/is_floating_ip``; ``r/is_image``;
``d/is_image``) of the 1.7x releases, hence the ``>= 1.70, < 2.0`` pin.

Example:
    >>> MAPPING.instance_resource
    'ibm_is_instance'
    >>> tag("slipstream-node", "web")
    'slipstream-node:web'
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
    RESERVED_PREFIX,
    dns_name,
    firewall_ports,
    header,
    image_data_name,
    images_setting,
    instance_labels,
    missing_image,
    no_machine_type,
    reserved_labels,
    snapshot_source,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
INSTANCE = "ibm_is_instance"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["region", "zone", "vpc", "subnet"],
    "additionalProperties": False,
    "properties": {
        "region": {"type": "string", "pattern": "^[a-z]{2}-[a-z]+$"},
        "zone": {"type": "string", "pattern": "^[a-z]{2}-[a-z]+-[0-9]$"},
        "vpc": _STRING,
        "subnet": _STRING,
        "resource_group": _STRING,
        "keys": {"type": "array", "items": _STRING},
        "floating_ip": {"type": "boolean"},
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "profile": {"type": "string", "pattern": "^[a-z0-9]+-[0-9]+x[0-9]+$"},
        "boot_volume_gb": {"type": "integer", "minimum": 100, "maximum": 250},
        "tags": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9 _.-]+$"},
            "additionalProperties": {"type": "string", "pattern": "^[A-Za-z0-9 _.:-]*$"},
        },
    },
}


def tag(key: str, value: str) -> str:
    """One IBM tag (``key:value``; IBM tags are plain strings)."""
    return f"{key}:{value}"


class IbmMapping(CloudMapping):
    """IBM Cloud VPC instances, one security group per node, optional floating IPs."""

    type = "ibm"
    instance_resource = INSTANCE
    snapshot_resource: ClassVar[str] = "ibm_is_image"
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "IBM Cloud", root, p)
            reasons += no_machine_type(self.type, "IBM Cloud", p, "profile")
            reasons += reserved_labels(p, "tags")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        resources: dict[str, Any] = {
            "ibm_is_security_group": {
                name: {
                    "name": dns_name(f"ss-{root.deployment}-{p.node}", 45) + "-${var.run_id}",
                    "vpc": escape(str(settings["vpc"])),
                    **_group_of(settings),
                }
                for name, p in nodes
            },
            "ibm_is_security_group_rule": {
                **{name: _inbound(name, p) for name, p in nodes},
                **{f"{name}-out": _outbound(name) for name, _ in nodes},
            },
            INSTANCE: {name: self._instance(root, name, p) for name, p in nodes},
        }
        document: dict[str, Any] = {
            **header(root, "ibm", "IBM-Cloud/ibm", ">= 1.70, < 2.0"),
            "provider": {"ibm": {"region": escape(str(settings["region"]))}},
            "variable": VARIABLES,
            "data": {
                "ibm_is_image": {
                    image_data_name(i): {
                        "name": escape(str(image_lookup(self.type, i, dict(settings))["name"]))
                    }
                    for i in images
                }
            },
            "resource": resources,
            "output": instances_output(
                INSTANCE,
                root.placements,
                address="r.primary_network_interface[0].primary_ip[0].address",
            ),
        }
        if settings.get("floating_ip", True):
            _add_floating_ips(document, root, nodes)
        return document

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """An ``ibm_is_image`` of the boot volume of the (stopped) instance at
        ``instance_address``.

        Example:
            >>> block = MAPPING.snapshot('ibm_is_instance.web["1"]', "web-1a2b")
            >>> block["ibm_is_image"]["web-1a2b"]["source_volume"]
            '${ibm_is_instance.web["1"].boot_volume[0].volume_id}'
        """
        snapshot_source(INSTANCE, instance_address)
        return {
            "ibm_is_image": {
                image_data_name(name): {
                    "name": dns_name(name),
                    "source_volume": f"${{{instance_address}.boot_volume[0].volume_id}}",
                    "tags": [tag(f"{RESERVED_PREFIX}run", "${var.run_id}")],
                }
            }
        }

    def _instance(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        profile = overrides.get("profile") or machine_type(self.type, p.size)
        labels = instance_labels(root, p, overrides.get("tags"))
        # Free text does not fit IBM's tag alphabet; the deployment's description stays out.
        labels.pop(f"{RESERVED_PREFIX}description")
        instance: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": dns_name(f"{root.deployment}-{p.node}", 50) + "-${each.key}",
            "image": f"${{data.ibm_is_image.{image_data_name(p.image)}.id}}",
            "profile": escape(str(profile)),
            "vpc": escape(str(settings["vpc"])),
            "zone": escape(str(settings["zone"])),
            "primary_network_interface": [
                {
                    "subnet": escape(str(settings["subnet"])),
                    "security_groups": [f"${{ibm_is_security_group.{name}.id}}"],
                }
            ],
            "user_data": user_data(),
            "tags": [tag(k, v) for k, v in sorted(labels.items())],
            # A newer image or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["image", "user_data"]},
            **_group_of(settings),
        }
        if "boot_volume_gb" in overrides or p.size.disk_gb > 100:
            size = int(overrides.get("boot_volume_gb", p.size.disk_gb))
            instance["boot_volume"] = [{"size": size}]
        if "keys" in settings:
            instance["keys"] = [escape(str(k)) for k in settings["keys"]]
        return instance


def _group_of(settings: Any) -> dict[str, str]:
    if "resource_group" in settings:
        return {"resource_group": escape(str(settings["resource_group"]))}
    return {}


def _inbound(name: str, p: NodePlacement) -> dict[str, Any]:
    return {
        "for_each": {str(port): port for port in firewall_ports(p)},
        "group": f"${{ibm_is_security_group.{name}.id}}",
        "direction": "inbound",
        "remote": "0.0.0.0/0",
        "tcp": {"port_min": "${each.value}", "port_max": "${each.value}"},
    }


def _outbound(name: str) -> dict[str, Any]:
    return {
        "group": f"${{ibm_is_security_group.{name}.id}}",
        "direction": "outbound",
        "remote": "0.0.0.0/0",
    }


def _add_floating_ips(
    document: dict[str, Any], root: CloudRoot, nodes: list[tuple[str, NodePlacement]]
) -> None:
    """One floating IP per instance on its primary interface; it becomes the address."""
    document["resource"]["ibm_is_floating_ip"] = {
        name: {
            "for_each": instance_map(p),
            "name": dns_name(f"{root.deployment}-{p.node}", 40) + "-${each.key}-${var.run_id}",
            "target": f"${{{INSTANCE}.{name}[each.key].primary_network_interface[0].id}}",
            **_group_of(root.settings),
        }
        for name, p in nodes
    }
    maps = [
        f"{{for k, r in {INSTANCE}.{name} : r.id => ibm_is_floating_ip.{name}[k].address}}"
        for name, _ in nodes
    ]
    document["locals"] = {"floating_ips": "${merge(" + ", ".join(maps) + ")}"}
    document["output"] = instances_output(
        INSTANCE, tuple(p for _, p in nodes), address="local.floating_ips[r.id]"
    )


MAPPING = IbmMapping()
