"""Google Compute Engine through the official ``hashicorp/google`` provider.

Per node: a ``google_compute_firewall`` that opens the component's ports (plus SSH) to the
machines carrying the node's network tag, and a ``google_compute_instance`` with
``for_each`` over instance indices, booted from the newest image of the catalog's image
family and bootstrapped by :func:`providers_map.bootstrap.user_data` as its startup script
(Google's guest agent runs it on every image, with or without cloud-init). Credentials come
from the usual Google environment (application default credentials).

Google labels only take lower case letters, digits, ``_`` and ``-``: machines carry our
labels in that form (``web.2`` becomes ``web-2``) and the exact values in their metadata.
Snapshots are images made from the machine's boot disk (``google_compute_image``); Google
wants the machine stopped first.

Checked against the hashicorp/google 6.50.0 schema (``tests/providers_map/schemas/
google.json``), hence the ``~> 6.50`` pin.

Example:
    >>> MAPPING.instance_resource
    'google_compute_instance'
    >>> label_value("Torque_Master.v2")
    'torque_master-v2'
"""

from __future__ import annotations

import re
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
INSTANCE = "google_compute_instance"
_STRING = {"type": "string", "minLength": 1}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["project", "region", "zone"],
    "additionalProperties": False,
    "properties": {
        "project": {"type": "string", "pattern": "^[a-z][a-z0-9-]{4,28}[a-z0-9]$"},
        "region": {"type": "string", "pattern": "^[a-z]+-[a-z]+[0-9]+$"},
        "zone": {"type": "string", "pattern": "^[a-z]+-[a-z]+[0-9]+-[a-z]$"},
        "network": _STRING,
        "subnetwork": _STRING,
        "public_ip": {"type": "boolean"},
        "images": images_setting("project", "family"),
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "machine_type": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "disk_gb": {"type": "integer", "minimum": 10, "maximum": 65536},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z][a-z0-9_-]{0,62}$"},
            "additionalProperties": {"type": "string", "pattern": "^[a-z0-9_-]{0,63}$"},
        },
    },
}


def label_value(text: str) -> str:
    """``text`` as a Google label value: lower case, anything else than letters, digits,
    ``_`` and ``-`` turned into ``-``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


class GoogleMapping(CloudMapping):
    """Compute Engine instances, one firewall rule per node."""

    type = "google"
    instance_resource = INSTANCE
    snapshot_resource: ClassVar[str] = "google_compute_image"
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            reasons += missing_image(self.type, "Google", root, p)
            reasons += no_machine_type(self.type, "Google", p, "machine_type")
            reasons += reserved_labels(p, "labels")
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        images = sorted({p.image for p in root.placements})
        nodes = [(resource_name(p.node), p) for p in root.placements]
        public = bool(settings.get("public_ip", True))
        nat = "r.network_interface[0].access_config[0].nat_ip"
        return {
            **header(root, "google", "hashicorp/google", "~> 6.50"),
            "provider": {
                "google": {key: escape(str(settings[key])) for key in ("project", "region", "zone")}
            },
            "variable": VARIABLES,
            "data": {
                "google_compute_image": {image_data_name(i): self._image(root, i) for i in images}
            },
            "resource": {
                "google_compute_firewall": {name: self._firewall(root, p) for name, p in nodes},
                INSTANCE: {name: self._instance(root, p) for name, p in nodes},
            },
            "output": instances_output(
                INSTANCE,
                root.placements,
                address=nat if public else "r.network_interface[0].network_ip",
            ),
        }

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """A ``google_compute_image`` of the boot disk of the (stopped) instance at
        ``instance_address``.

        Example:
            >>> block = MAPPING.snapshot('google_compute_instance.web["1"]', "Web_1a2b")
            >>> image = block["google_compute_image"]["Web_1a2b"]
            >>> image["name"], image["source_disk"]
            ('web-1a2b', '${google_compute_instance.web["1"].boot_disk[0].source}')
        """
        snapshot_source(INSTANCE, instance_address)
        return {
            "google_compute_image": {
                image_data_name(name): {
                    "name": dns_name(name),
                    "source_disk": f"${{{instance_address}.boot_disk[0].source}}",
                    "labels": {
                        f"{RESERVED_PREFIX}service": "${lower(var.service)}",
                        f"{RESERVED_PREFIX}run": "${var.run_id}",
                    },
                }
            }
        }

    def _image(self, root: CloudRoot, image: str) -> dict[str, Any]:
        found = image_lookup(self.type, image, dict(root.settings))
        return {"project": escape(str(found["project"])), "family": escape(str(found["family"]))}

    def _firewall(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        return {
            "name": _network_tag(p),
            "description": f"slipstream {escape(root.deployment)} {p.node}",
            "network": escape(str(root.settings.get("network", "default"))),
            "direction": "INGRESS",
            "allow": [{"protocol": "tcp", "ports": [str(port) for port in firewall_ports(p)]}],
            "source_ranges": ["0.0.0.0/0"],
            "target_tags": [_network_tag(p)],
        }

    def _instance(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        interface: dict[str, Any] = {
            "network": escape(str(settings.get("network", "default"))),
        }
        if "subnetwork" in settings:
            interface["subnetwork"] = escape(str(settings["subnetwork"]))
        if settings.get("public_ip", True):
            interface["access_config"] = [{}]
        exact = instance_labels(root, p, None)
        kind = overrides.get("machine_type") or machine_type(self.type, p.size)
        return {
            "for_each": instance_map(p),
            "name": f"{_network_tag(p)}-${{each.key}}",
            "description": f"slipstream {escape(root.deployment)} {p.node}",
            "machine_type": escape(str(kind)),
            "zone": escape(str(settings["zone"])),
            "tags": [_network_tag(p)],
            "boot_disk": {
                "initialize_params": {
                    "image": f"${{data.google_compute_image.{image_data_name(p.image)}.self_link}}",
                    "size": int(overrides.get("disk_gb", p.size.disk_gb)),
                }
            },
            "network_interface": [interface],
            "metadata_startup_script": user_data(),
            "metadata": exact,
            "labels": {**dict(overrides.get("labels") or {}), **_labels(exact)},
            # A newer image or server URL must not rebuild running machines.
            "lifecycle": {"ignore_changes": ["boot_disk", "metadata_startup_script"]},
        }


def _tag_part(node: str) -> str:
    return dns_name(node, 35)


def _network_tag(p: NodePlacement) -> str:
    # Run ids are 16 hex digits: "ss-" + run + node + "-" + index stays within 63.
    return f"ss-${{var.run_id}}-{_tag_part(p.node)}"


def _labels(exact: dict[str, str]) -> dict[str, str]:
    """Our labels in Google's alphabet; values from variables are converted by Terraform."""
    converted = {
        f"{RESERVED_PREFIX}service": "${lower(var.service)}",
        f"{RESERVED_PREFIX}run": "${var.run_id}",
        f"{RESERVED_PREFIX}instance": '${replace(each.value.instance, ".", "-")}',
    }
    return {
        key: converted.get(key) or label_value(value)
        for key, value in exact.items()
        if key != f"{RESERVED_PREFIX}description"
    }


MAPPING = GoogleMapping()
