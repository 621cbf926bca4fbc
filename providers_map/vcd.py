"""VMware Cloud Director (vCloud) through the ``vmware/vcd`` provider.

Per instance (``for_each`` over instance indices): a standalone ``vcd_vm`` with exactly
the size's CPUs and memory, instantiated from the catalog's vApp template (found by name
in the cloud's ``catalog``), on the cloud's org ``network`` with an address from its pool,
the agent bootstrap base64-encoded in the ``user-data`` guest property (read by
cloud-init's OVF data source, which the usual cloud images have), and our labels as VM
metadata. Credentials come from ``VCD_USER``/``VCD_PASSWORD`` (or ``VCD_API_TOKEN``);
``url``, ``org`` and ``vdc`` sit in ``clouds.yaml``.

Firewall: with the cloud's ``vdc_group_id`` (an NSX-T VDC group), every node gets a
dynamic security group of the VMs carrying its security tag, an application port profile
of its ports (plus SSH) and a distributed firewall rule letting those ports in. Without it
the org's edge gateway rules stay as they are: its firewall is one list that
``vcd_nsxt_firewall`` would replace whole, so SlipStream does not touch it.

Snapshots capture the VM's (hidden) vApp into a vApp template in the same catalog
(``vcd_catalog_vapp_template`` with ``capture_vapp``).

No cdktf package on PyPI carries this provider's schema; each resource follows the
registry documentation of version 3.14.1 (``resources/vm``, ``resources/nsxt_app_port_profile``,
``resources/nsxt_dynamic_security_group``, ``resources/nsxt_distributed_firewall_rule``,
``resources/catalog_vapp_template``, ``data-sources/catalog``,
``data-sources/catalog_vapp_template``), as generated into the public cdktf bindings of
that version, hence the ``~> 3.14`` pin.

Example:
    >>> MAPPING.instance_resource
    'vcd_vm'
    >>> MAPPING.settings_schema["required"]
    ['url', 'org', 'vdc', 'catalog', 'network']
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
    missing_image,
    reserved_labels,
    snapshot_source,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
VM = "vcd_vm"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url", "org", "vdc", "catalog", "network"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https://.+/api$"},
        "org": _STRING,
        "vdc": _STRING,
        "catalog": _STRING,
        "network": _STRING,
        "vdc_group_id": {"type": "string", "pattern": "^urn:vcloud:vdcGroup:"},
        "allow_unverified_ssl": {"type": "boolean"},
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpus": {"type": "integer", "minimum": 1, "maximum": 768},
        "memory_mb": {"type": "integer", "minimum": 256},
        "storage_profile": _STRING,
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class VcdMapping(CloudMapping):
    """Standalone Cloud Director VMs, with NSX-T distributed firewall rules when possible."""

    type = "vcd"
    instance_resource = VM
    snapshot_resource: ClassVar[str] = "vcd_catalog_vapp_template"
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "Cloud Director", root, p)
            reasons += reserved_labels(p, "metadata")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        resources: dict[str, Any] = {VM: {name: self._vm(root, p) for name, p in nodes}}
        if "vdc_group_id" in settings:
            resources.update(_firewall(root, nodes))
        return {
            **header(root, "vcd", "vmware/vcd", "~> 3.14"),
            "provider": {
                "vcd": {
                    "url": escape(str(settings["url"])),
                    "org": escape(str(settings["org"])),
                    "vdc": escape(str(settings["vdc"])),
                    "allow_unverified_ssl": bool(settings.get("allow_unverified_ssl", False)),
                }
            },
            "variable": VARIABLES,
            "data": {
                "vcd_catalog": {"catalog": {"name": escape(str(settings["catalog"]))}},
                "vcd_catalog_vapp_template": {
                    image_data_name(i): {
                        "catalog_id": "${data.vcd_catalog.catalog.id}",
                        "name": escape(str(image_lookup(self.type, i, dict(settings))["name"])),
                    }
                    for i in images
                },
            },
            "resource": resources,
            "output": instances_output(VM, root.placements, address="r.network[0].ip"),
        }

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """A vApp template in the cloud's catalog captured from the (hidden) vApp of the
        standalone VM at ``instance_address``; new VMs made from it are customized again.

        Example:
            >>> block = MAPPING.snapshot('vcd_vm.web["1"]', "web-1a2b")
            >>> block["vcd_catalog_vapp_template"]["web-1a2b"]["capture_vapp"]
            {'source_id': '${vcd_vm.web["1"].vapp_id}', 'customize_on_instantiate': True}
        """
        snapshot_source(VM, instance_address)
        return {
            "vcd_catalog_vapp_template": {
                image_data_name(name): {
                    "catalog_id": "${data.vcd_catalog.catalog.id}",
                    "name": escape(name),
                    "capture_vapp": {
                        "source_id": f"${{{instance_address}.vapp_id}}",
                        "customize_on_instantiate": True,
                    },
                }
            }
        }

    def _vm(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        cpus, ram_gb = machine_shape(self.type, p.size)
        template = image_data_name(p.image)
        vm: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "description": f"slipstream {escape(root.deployment)} {p.node}",
            "vapp_template_id": f"${{data.vcd_catalog_vapp_template.{template}.id}}",
            "cpus": int(overrides.get("cpus", cpus)),
            "memory": int(overrides.get("memory_mb", round(ram_gb * 1024))),
            "network": [
                {
                    "type": "org",
                    "name": escape(str(settings["network"])),
                    "ip_allocation_mode": "POOL",
                    "is_primary": True,
                }
            ],
            "guest_properties": {"user-data": user_data_base64()},
            "metadata": instance_labels(root, p, overrides.get("metadata")),
            "power_on": True,
            # A newer template or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["vapp_template_id", "guest_properties"]},
        }
        if "storage_profile" in overrides:
            vm["storage_profile"] = escape(str(overrides["storage_profile"]))
        if "vdc_group_id" in settings:
            vm["security_tags"] = [_tag(p)]
        return vm


def _tag(p: NodePlacement) -> str:
    return f"slipstream-${{var.run_id}}-{p.node}"


def _firewall(root: CloudRoot, nodes: list[tuple[str, NodePlacement]]) -> dict[str, Any]:
    group = escape(str(root.settings["vdc_group_id"]))
    prefix = escape(root.deployment)
    return {
        "vcd_nsxt_app_port_profile": {
            name: {
                "name": f"{prefix}-{p.node}-${{var.run_id}}",
                "scope": "TENANT",
                "context_id": group,
                "app_port": [
                    {"protocol": "TCP", "port": [str(port) for port in firewall_ports(p)]}
                ],
            }
            for name, p in nodes
        },
        "vcd_nsxt_dynamic_security_group": {
            name: {
                "name": f"{prefix}-{p.node}-${{var.run_id}}",
                "vdc_group_id": group,
                "criteria": [
                    {"rule": [{"type": "VM_TAG", "operator": "EQUALS", "value": _tag(p)}]}
                ],
            }
            for name, p in nodes
        },
        "vcd_nsxt_distributed_firewall_rule": {
            name: {
                "name": f"{prefix}-{p.node}-${{var.run_id}}",
                "vdc_group_id": group,
                "action": "ALLOW",
                "direction": "IN",
                "ip_protocol": "IPV4",
                "destination_ids": [f"${{vcd_nsxt_dynamic_security_group.{name}.id}}"],
                "app_port_profile_ids": [f"${{vcd_nsxt_app_port_profile.{name}.id}}"],
            }
            for name, p in nodes
        },
    }


MAPPING = VcdMapping()
