"""OpenStack through the official ``terraform-provider-openstack/openstack`` provider.

The cloud's ``cloud`` setting names an entry of the user's own OpenStack ``clouds.yaml``,
where credentials stay. Per node: a security group with one rule per port (plus SSH) and an
``openstack_compute_instance_v2`` with ``for_each`` over instance indices, booted from the
newest image of the catalog's name and bootstrapped by
:func:`providers_map.bootstrap.user_data`. The flavor is, first found: the component's
``flavor`` override, the cloud's ``flavors`` setting for a named size, the size table.
The disk is the flavor's. With ``floating_ip_pool`` every instance gets a floating IP,
which becomes its address. Snapshots are not offered: the provider has no resource that
images a server.

Checked against the terraform-provider-openstack/openstack 3.0.0 schema
(``tests/providers_map/schemas/openstack.json``), hence the ``~> 3.0`` pin.

Example:
    >>> MAPPING.instance_resource
    'openstack_compute_instance_v2'
    >>> MAPPING.settings_schema["required"]
    ['cloud']
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
    image_data_name,
    instance_labels,
    reserved_labels,
)
from providers_map.size import SIZES

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
INSTANCE = "openstack_compute_instance_v2"

_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cloud"],
    "additionalProperties": False,
    "properties": {
        "cloud": _STRING,
        "network": _STRING,
        "key_pair": _STRING,
        "floating_ip_pool": _STRING,
        "images": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": _STRING},
            },
        },
        "flavors": {
            "type": "object",
            "additionalProperties": False,
            "properties": {size: _STRING for size in SIZES},
        },
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "flavor": _STRING,
        "metadata": {
            "type": "object",
            "propertyNames": {"maxLength": 255},
            "additionalProperties": {"type": "string", "maxLength": 255},
        },
    },
}


def flavor(root: CloudRoot, p: NodePlacement) -> str | None:
    """The flavor name of a node's machines, escaped; None when nothing fits.

    Example:
        >>> from providers_map.size import Size
        >>> p = NodePlacement("web", "web", "", (1,), "debian-12", Size.named("large"),
        ...                   (), (), {})
        >>> flavor(CloudRoot("lab", {"cloud": "lab"}, "d", "", (p,)), p)
        'm1.large'
    """
    if "flavor" in p.overrides:
        return escape(str(p.overrides["flavor"]))
    named = (root.settings.get("flavors") or {}).get(p.size.name or "")
    found = named or machine_type("openstack", p.size)
    return escape(str(found)) if found else None


class OpenStackMapping(CloudMapping):
    """OpenStack servers, one security group per node, optional floating IPs."""

    type = "openstack"
    instance_resource = INSTANCE
    cannot_snapshot: ClassVar[str] = (
        "the OpenStack provider has no resource that makes an image of a server"
    )
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            if image_lookup(self.type, p.image, dict(root.settings)) is None:
                reasons.append(
                    f"node `{p.node}`: image `{p.image}` has no OpenStack name; "
                    f"add it under `images` in the cloud's settings"
                )
            if flavor(root, p) is None:
                reasons.append(
                    f"node `{p.node}`: no OpenStack flavor has {p.size.cpu} vCPUs and "
                    f"{p.size.ram_gb:g} GiB of RAM; give component `{p.component}` "
                    f"`clouds: {{openstack: {{flavor: …}}}}`"
                )
            reasons.extend(reserved_labels(p, "metadata"))
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        resources: dict[str, Any] = {
            "openstack_networking_secgroup_v2": {
                name: {
                    "name": f"{escape(root.deployment)}-{p.node}-${{var.run_id}}",
                    "description": f"slipstream {root.deployment} {p.node}",
                }
                for name, p in nodes
            },
            "openstack_networking_secgroup_rule_v2": {name: _rules(name, p) for name, p in nodes},
            INSTANCE: {name: self._instance(root, p) for name, p in nodes},
        }
        data: dict[str, Any] = {
            "openstack_images_image_v2": {image_data_name(i): self._image(root, i) for i in images}
        }
        document: dict[str, Any] = {
            "//": f"slipstream deployment {escape(root.deployment)} on cloud {root.cloud}",
            "terraform": {
                "required_version": ">= 1.4.0",
                "required_providers": {
                    "openstack": {
                        "source": "terraform-provider-openstack/openstack",
                        "version": "~> 3.0",
                    }
                },
            },
            "provider": {"openstack": {"cloud": escape(str(root.settings["cloud"]))}},
            "variable": VARIABLES,
            "data": data,
            "resource": resources,
            "output": instances_output(INSTANCE, root.placements, address="r.access_ip_v4"),
        }
        if "floating_ip_pool" in root.settings:
            _add_floating_ips(document, escape(str(root.settings["floating_ip_pool"])), nodes)
        return document

    def _image(self, root: CloudRoot, image: str) -> dict[str, Any]:
        found = image_lookup(self.type, image, dict(root.settings))
        return {"name": escape(str(found["name"])), "most_recent": True}

    def _instance(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        settings = root.settings
        instance: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "image_id": f"${{data.openstack_images_image_v2.{image_data_name(p.image)}.id}}",
            "flavor_name": flavor(root, p),
            "security_groups": [
                f"${{openstack_networking_secgroup_v2.{resource_name(p.node)}.name}}"
            ],
            "user_data": user_data(),
            "metadata": instance_labels(root, p, p.overrides.get("metadata")),
            # A new image version or server URL must not rebuild running servers.
            "lifecycle": {"ignore_changes": ["image_id", "user_data"]},
        }
        if "key_pair" in settings:
            instance["key_pair"] = escape(str(settings["key_pair"]))
        if "network" in settings:
            instance["network"] = [{"name": escape(str(settings["network"]))}]
        return instance


def _rules(name: str, p: NodePlacement) -> dict[str, Any]:
    return {
        "for_each": {str(port): port for port in firewall_ports(p)},
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_range_min": "${each.value}",
        "port_range_max": "${each.value}",
        "remote_ip_prefix": "0.0.0.0/0",
        "security_group_id": f"${{openstack_networking_secgroup_v2.{name}.id}}",
    }


def _add_floating_ips(
    document: dict[str, Any], pool: str, nodes: list[tuple[str, NodePlacement]]
) -> None:
    """One floating IP per instance, bound to its port; it becomes the instance's address."""
    resources, data = document["resource"], document["data"]
    data["openstack_networking_port_v2"] = {
        name: {
            "for_each": f"${{{INSTANCE}.{name}}}",
            "device_id": "${each.value.id}",
            "network_id": "${each.value.network[0].uuid}",
        }
        for name, _ in nodes
    }
    resources["openstack_networking_floatingip_v2"] = {
        name: {"for_each": instance_map(p), "pool": pool} for name, p in nodes
    }
    resources["openstack_networking_floatingip_associate_v2"] = {
        name: {
            "for_each": instance_map(p),
            "floating_ip": f"${{openstack_networking_floatingip_v2.{name}[each.key].address}}",
            "port_id": f"${{data.openstack_networking_port_v2.{name}[each.key].id}}",
        }
        for name, p in nodes
    }
    # instances_output takes one address expression for every node; an id-keyed map lets it
    # reach each node's own floating IPs.
    maps = [
        f"{{for k, r in {INSTANCE}.{name} : r.id => "
        f"openstack_networking_floatingip_v2.{name}[k].address}}"
        for name, _ in nodes
    ]
    document["locals"] = {"floating_ips": "${merge(" + ", ".join(maps) + ")}"}
    document["output"] = instances_output(
        INSTANCE, tuple(p for _, p in nodes), address="local.floating_ips[r.id]"
    )


MAPPING = OpenStackMapping()
