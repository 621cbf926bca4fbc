"""Microsoft Azure through the official ``hashicorp/azurerm`` provider.

A run gets its own resource group (or uses the cloud's ``resource_group``) and, unless the
cloud names a ``subnet_id``, its own virtual network and subnet. Per node: a network
security group with one ``azurerm_network_security_rule`` per port (plus SSH). Per
instance (``for_each`` over instance indices): a static public IP, a network interface
bound to the node's security group, and an ``azurerm_linux_virtual_machine`` booted from
the catalog's marketplace image, whose ``custom_data`` is
:func:`providers_map.bootstrap.user_data_base64`. Azure requires an SSH key on Linux
machines: the cloud's ``ssh_public_key`` (public, so it may sit in ``clouds.yaml``).
Credentials come from the usual Azure environment (``ARM_*`` or the Azure CLI login).

Snapshots are managed images (``azurerm_image`` from the machine): Azure only images a
machine that has been generalized (``waagent -deprovision``) and deallocated, which the
image build must do before it applies the snapshot block.

Checked against the hashicorp/azurerm 4.55.0 schema (``tests/providers_map/schemas/
azurerm.json``), hence the ``~> 4.55`` pin.

Example:
    >>> MAPPING.instance_resource
    'azurerm_linux_virtual_machine'
    >>> MAPPING.settings_schema["required"]
    ['location', 'ssh_public_key']
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
from providers_map.catalog import image_lookup, machine_type
from providers_map.machines import (
    dns_name,
    firewall_ports,
    header,
    image_data_name,
    images_setting,
    instance_labels,
    labels,
    missing_image,
    no_machine_type,
    reserved_labels,
    snapshot_source,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
VM = "azurerm_linux_virtual_machine"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["location", "ssh_public_key"],
    "additionalProperties": False,
    "properties": {
        "location": {"type": "string", "pattern": "^[a-z][a-z0-9]+$"},
        "subscription_id": _STRING,
        "resource_group": _STRING,
        "subnet_id": _STRING,
        "admin_username": {"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$"},
        "ssh_public_key": {"type": "string", "pattern": "^(ssh-|ecdsa-)"},
        "public_ip": {"type": "boolean"},
        "images": images_setting("publisher", "offer", "sku"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "vm_size": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "os_disk_gb": {"type": "integer", "minimum": 30, "maximum": 4095},
        "tags": {
            "type": "object",
            "propertyNames": {"maxLength": 512},
            "additionalProperties": {"type": "string", "maxLength": 256},
        },
    },
}


class AzureMapping(CloudMapping):
    """Azure Linux virtual machines, one network security group per node."""

    type = "azure"
    instance_resource = VM
    snapshot_resource: ClassVar[str] = "azurerm_image"
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "Azure", root, p)
            reasons += no_machine_type(self.type, "Azure", p, "vm_size")
            reasons += reserved_labels(p, "tags")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        nodes = [(resource_name(p.node), p) for p in root.placements]
        resources: dict[str, Any] = {}
        data: dict[str, Any] = {}
        if "resource_group" in settings:
            data["azurerm_resource_group"] = {"run": {"name": escape(settings["resource_group"])}}
        else:
            resources["azurerm_resource_group"] = {
                "run": {
                    "name": f"slipstream-{escape(root.deployment)}-${{var.run_id}}",
                    "location": escape(settings["location"]),
                    "tags": _run_tags(),
                }
            }
        if "subnet_id" not in settings:
            resources["azurerm_virtual_network"] = {"run": _network(settings)}
            resources["azurerm_subnet"] = {
                "run": {
                    "name": "slipstream",
                    "resource_group_name": _group(settings),
                    "virtual_network_name": "${azurerm_virtual_network.run.name}",
                    "address_prefixes": ["10.42.0.0/24"],
                }
            }
        resources["azurerm_network_security_group"] = {
            name: {
                "name": f"{escape(root.deployment)}-{p.node}-${{var.run_id}}",
                "location": _location(settings),
                "resource_group_name": _group(settings),
                "tags": labels(root, p, None),
            }
            for name, p in nodes
        }
        resources["azurerm_network_security_rule"] = {
            name: _rules(name, p, settings) for name, p in nodes
        }
        public = bool(settings.get("public_ip", True))
        if public:
            resources["azurerm_public_ip"] = {
                name: {
                    "for_each": instance_map(p),
                    "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}-${{var.run_id}}",
                    "location": _location(settings),
                    "resource_group_name": _group(settings),
                    "allocation_method": "Static",
                    "sku": "Standard",
                    "tags": instance_labels(root, p, None),
                }
                for name, p in nodes
            }
        resources["azurerm_network_interface"] = {
            name: self._nic(root, name, p, public) for name, p in nodes
        }
        resources["azurerm_network_interface_security_group_association"] = {
            name: {
                "for_each": instance_map(p),
                "network_interface_id": f"${{azurerm_network_interface.{name}[each.key].id}}",
                "network_security_group_id": f"${{azurerm_network_security_group.{name}.id}}",
            }
            for name, p in nodes
        }
        resources[VM] = {name: self._vm(root, name, p) for name, p in nodes}
        provider: dict[str, Any] = {"features": {}}
        if "subscription_id" in settings:
            provider["subscription_id"] = escape(settings["subscription_id"])
        document: dict[str, Any] = {
            **header(root, "azurerm", "hashicorp/azurerm", "~> 4.55"),
            "provider": {"azurerm": provider},
            "variable": VARIABLES,
            "resource": resources,
            "output": instances_output(
                VM,
                root.placements,
                address="r.public_ip_address" if public else "r.private_ip_address",
            ),
        }
        if data:
            document["data"] = data
        return document

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """An ``azurerm_image`` of the (generalized, deallocated) machine at
        ``instance_address``, in the machine's own resource group and location.

        Example:
            >>> block = MAPPING.snapshot('azurerm_linux_virtual_machine.web["1"]', "web-1a2b")
            >>> block["azurerm_image"]["web-1a2b"]["source_virtual_machine_id"]
            '${azurerm_linux_virtual_machine.web["1"].id}'
        """
        snapshot_source(VM, instance_address)
        return {
            "azurerm_image": {
                image_data_name(name): {
                    "name": escape(name),
                    "location": f"${{{instance_address}.location}}",
                    "resource_group_name": f"${{{instance_address}.resource_group_name}}",
                    "source_virtual_machine_id": f"${{{instance_address}.id}}",
                    "tags": _run_tags(),
                }
            }
        }

    def _nic(self, root: CloudRoot, name: str, p: NodePlacement, public: bool) -> dict[str, Any]:
        settings = root.settings
        ip: dict[str, Any] = {
            "name": "primary",
            "subnet_id": escape(settings["subnet_id"])
            if "subnet_id" in settings
            else "${azurerm_subnet.run.id}",
            "private_ip_address_allocation": "Dynamic",
        }
        if public:
            ip["public_ip_address_id"] = f"${{azurerm_public_ip.{name}[each.key].id}}"
        return {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}-${{var.run_id}}",
            "location": _location(settings),
            "resource_group_name": _group(settings),
            "ip_configuration": [ip],
            "tags": instance_labels(root, p, None),
        }

    def _vm(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        image = image_lookup(self.type, p.image, dict(settings))
        user = escape(str(settings.get("admin_username", "slipstream")))
        size = overrides.get("vm_size") or machine_type(self.type, p.size)
        return {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "computer_name": f"{dns_name(f'{root.deployment}-{p.node}', 55)}-${{each.key}}",
            "location": _location(settings),
            "resource_group_name": _group(settings),
            "size": escape(str(size)),
            "admin_username": user,
            "admin_ssh_key": [
                {"username": user, "public_key": escape(str(settings["ssh_public_key"]))}
            ],
            "network_interface_ids": [f"${{azurerm_network_interface.{name}[each.key].id}}"],
            "os_disk": {
                "caching": "ReadWrite",
                "storage_account_type": "StandardSSD_LRS",
                # Marketplace images bring a 30 GiB disk; Azure refuses a smaller one.
                "disk_size_gb": int(overrides.get("os_disk_gb", max(30, p.size.disk_gb))),
            },
            "source_image_reference": {
                "publisher": escape(str(image["publisher"])),
                "offer": escape(str(image["offer"])),
                "sku": escape(str(image["sku"])),
                "version": "latest",
            },
            "custom_data": user_data_base64(),
            "tags": instance_labels(root, p, overrides.get("tags")),
            # A newer image or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["custom_data", "source_image_reference"]},
        }


def _group(settings: Any) -> str:
    if "resource_group" in settings:
        return "${data.azurerm_resource_group.run.name}"
    return "${azurerm_resource_group.run.name}"


def _location(settings: Any) -> str:
    return escape(str(settings["location"]))


def _network(settings: Any) -> dict[str, Any]:
    return {
        "name": "slipstream-${var.run_id}",
        "address_space": ["10.42.0.0/16"],
        "location": _location(settings),
        "resource_group_name": _group(settings),
        "tags": _run_tags(),
    }


def _run_tags() -> dict[str, str]:
    return {"slipstream-service": "${var.service}", "slipstream-run": "${var.run_id}"}


def _rules(name: str, p: NodePlacement, settings: Any) -> dict[str, Any]:
    # Priorities must differ within a security group: port → priority from 100 up.
    return {
        "for_each": {str(port): 100 + i for i, port in enumerate(firewall_ports(p))},
        "name": "port-${each.key}",
        "priority": "${each.value}",
        "direction": "Inbound",
        "access": "Allow",
        "protocol": "Tcp",
        "source_port_range": "*",
        "destination_port_range": "${each.key}",
        "source_address_prefix": "*",
        "destination_address_prefix": "*",
        "resource_group_name": _group(settings),
        "network_security_group_name": f"${{azurerm_network_security_group.{name}.name}}",
    }


MAPPING = AzureMapping()
