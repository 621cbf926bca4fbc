"""CloudSigma through the ``cloudsigma/cloudsigma`` provider.

Per instance (``for_each`` over instance indices): a ``cloudsigma_drive`` cloned from the
catalog's library drive (found by name) at the size's disk, and a ``cloudsigma_server``
with the size's CPUs (2 GHz a core, as ``smp`` cores) and memory, booting that drive, on a
DHCP public address, with the agent bootstrap in its ``cloudinit-user-data`` meta field
(read by cloud-init's CloudSigma data source) and our labels in the rest of ``meta``.
Credentials come from ``CLOUDSIGMA_TOKEN`` or ``CLOUDSIGMA_USERNAME``/``_PASSWORD``.

Firewall: the provider attaches no firewall policy to a server's NIC (its
``cloudsigma_firewall_policy`` had no such link and was dropped), so ``ports`` open
nothing here: a CloudSigma NIC without a policy accepts all inbound traffic. Operators who
need filtering attach a policy to the cloud's servers themselves.

Snapshots clone the instance's drive into a new ``cloudsigma_drive``: on CloudSigma an
image is a drive that later servers clone.

No cdktf package carries this provider's schema. Each resource follows the provider's
documentation and source at version 1.10 (``docs/resources/server.md``: ``meta`` came in
1.10.0; ``docs/resources/drive.md``; ``docs/data-sources/library_drive.md``, whose
``filter`` block later versions keep, deprecated), hence the ``>= 1.10, < 3.0`` pin.

Example:
    >>> MAPPING.instance_resource
    'cloudsigma_server'
    >>> MAPPING.snapshot_resource
    'cloudsigma_drive'
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
from providers_map.catalog import image_lookup, machine_shape
from providers_map.machines import (
    RESERVED_PREFIX,
    header,
    image_data_name,
    images_setting,
    instance_labels,
    missing_image,
    reserved_labels,
    snapshot_source,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}
SERVER = "cloudsigma_server"
DRIVE = "cloudsigma_drive"
MHZ_PER_CORE = 2000
GIB = 1024**3

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "location": {"type": "string", "pattern": "^[a-z]{3}$"},
        "ssh_keys": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "images": images_setting("name"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpu_mhz": {"type": "integer", "minimum": 250, "maximum": 124000},
        "memory_gb": {"type": "number", "minimum": 0.25, "maximum": 128},
        # The provider refuses meta keys longer than 32 characters.
        "meta": {
            "type": "object",
            "propertyNames": {"maxLength": 32},
            "additionalProperties": {"type": "string"},
        },
    },
}


class CloudSigmaMapping(CloudMapping):
    """CloudSigma servers, each booting its own clone of a library drive."""

    type = "cloudsigma"
    instance_resource = SERVER
    snapshot_resource: ClassVar[str] = DRIVE
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "CloudSigma", root, p)
            reasons += reserved_labels(p, "meta")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        provider: dict[str, Any] = {}
        if "location" in settings:
            provider["location"] = escape(str(settings["location"]))
        return {
            **header(root, "cloudsigma", "cloudsigma/cloudsigma", ">= 1.10, < 3.0"),
            "provider": {"cloudsigma": provider},
            "variable": VARIABLES,
            "data": {
                "cloudsigma_library_drive": {
                    image_data_name(i): {
                        "filter": [
                            {
                                "name": "name",
                                "values": [
                                    escape(str(image_lookup(self.type, i, dict(settings))["name"]))
                                ],
                            }
                        ]
                    }
                    for i in images
                }
            },
            "resource": {
                DRIVE: {name: self._drive(root, p) for name, p in nodes},
                SERVER: {name: self._server(root, name, p) for name, p in nodes},
            },
            "output": instances_output(SERVER, root.placements, address="r.ipv4_address"),
        }

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """A ``cloudsigma_drive`` cloned from the drive of the server at
        ``instance_address`` (best stopped first, so the file systems are clean).

        Example:
            >>> block = MAPPING.snapshot('cloudsigma_server.web["1"]', "web-1a2b")
            >>> block["cloudsigma_drive"]["web-1a2b"]["clone_drive_id"]
            '${cloudsigma_drive.web["1"].id}'
        """
        node, key = snapshot_source(SERVER, instance_address)
        drive = f'{DRIVE}.{node}["{key}"]' if key else f"{DRIVE}.{node}"
        return {
            DRIVE: {
                image_data_name(name): {
                    "name": escape(name),
                    "media": "disk",
                    "size": f"${{{drive}.size}}",
                    "clone_drive_id": f"${{{drive}.id}}",
                }
            }
        }

    def _drive(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        return {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}-${{var.run_id}}",
            "media": "disk",
            "size": p.size.disk_gb * GIB,
            "clone_drive_id": (f"${{data.cloudsigma_library_drive.{image_data_name(p.image)}.id}}"),
            # A newer library drive must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["clone_drive_id"]},
        }

    def _server(self, root: CloudRoot, name: str, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        cores, ram_gb = machine_shape(self.type, p.size)
        labels = instance_labels(root, p, overrides.get("meta"))
        # Meta keys are at most 32 characters; ours are shorter, descriptions are cut.
        labels[f"{RESERVED_PREFIX}description"] = labels[f"{RESERVED_PREFIX}description"][:200]
        server: dict[str, Any] = {
            "for_each": instance_map(p),
            "name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            "cpu": int(overrides.get("cpu_mhz", cores * MHZ_PER_CORE)),
            "smp": cores,
            "memory": int(float(overrides.get("memory_gb", ram_gb)) * GIB),
            # Required by the API; nobody is meant to use the console, so it is random.
            "vnc_password": '${substr(replace(uuid(), "-", ""), 0, 16)}',
            "drive": [{"uuid": f"${{{DRIVE}.{name}[each.key].id}}"}],
            "network": [{"type": "dhcp"}],
            "meta": {**labels, "cloudinit-user-data": user_data()},
            "lifecycle": {"ignore_changes": ["vnc_password", "meta"]},
        }
        if "ssh_keys" in settings:
            server["ssh_keys"] = [escape(str(k)) for k in settings["ssh_keys"]]
        return server


MAPPING = CloudSigmaMapping()
