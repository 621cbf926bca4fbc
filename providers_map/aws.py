"""Amazon EC2 through the official ``hashicorp/aws`` provider.

Per node: a security group (the component's ports plus SSH) and an ``aws_instance`` with
``for_each`` over instance indices, booted from the newest AMI matching the image catalog
and bootstrapped by :func:`providers_map.bootstrap.user_data`. Credentials never appear:
the provider reads the usual AWS environment. Once an instance exists, a newer AMI or a
new server URL/token does not replace it (``ignore_changes``), so scaling and
reconciling never reboot or recreate the survivors. Snapshots are AMIs made with
``aws_ami_from_instance``.

Checked against the hashicorp/aws 6.25.0 schema (``tests/providers_map/schemas/aws.json``),
hence the ``~> 6.25`` pin.

Example:
    >>> MAPPING.instance_resource
    'aws_instance'
    >>> image_data_name("ubuntu-22.04")
    'ubuntu-22-04'
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers_map.base import (
    COMMON_VARIABLES,
    CloudMapping,
    CloudRoot,
    NodePlacement,
    escape,
    escape_tree,
    instance_map,
    instances_output,
    resource_name,
)
from providers_map.bootstrap import AGENT_VARIABLES, user_data
from providers_map.catalog import image_lookup, machine_type
from providers_map.machines import (
    RESERVED_PREFIX,
    firewall_ports,
    image_data_name,
    instance_labels,
    labels,
    reserved_labels,
    snapshot_source,
)

VARIABLES: dict[str, Any] = {**COMMON_VARIABLES, **AGENT_VARIABLES}

_STRING = {"type": "string", "minLength": 1}
_LABELS: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"maxLength": 128},
    "additionalProperties": {"type": "string", "maxLength": 255},
}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["region"],
    "additionalProperties": False,
    # Without a subnet the instances land in the default VPC, away from a group made in vpc_id.
    "dependencies": {"vpc_id": ["subnet_id"]},
    "properties": {
        "region": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$"},
        "subnet_id": _STRING,
        "vpc_id": _STRING,
        "key_name": _STRING,
        "associate_public_ip": {"type": "boolean"},
        "images": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["owner", "name"],
                "additionalProperties": False,
                "properties": {"owner": _STRING, "name": _STRING},
            },
        },
    },
}

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "instance_type": {"type": "string", "pattern": "^[a-z0-9-]+\\.[a-z0-9-]+$"},
        "volume_size": {"type": "integer", "minimum": 1, "maximum": 65536},
        "tags": _LABELS,
    },
}


class AwsMapping(CloudMapping):
    """Amazon EC2 instances, one security group per node."""

    type = "aws"
    instance_resource = "aws_instance"
    snapshot_resource: ClassVar[str] = "aws_ami_from_instance"
    settings_schema = SETTINGS_SCHEMA
    override_schema = OVERRIDE_SCHEMA

    def check(self, root: CloudRoot) -> list[str]:
        reasons: list[str] = []
        for p in root.placements:
            if not p.built_image and image_lookup(self.type, p.image, dict(root.settings)) is None:
                reasons.append(
                    f"node `{p.node}`: image `{p.image}` has no AMI on AWS; "
                    f"add it under `images` in the cloud's settings"
                )
            if "instance_type" not in p.overrides and machine_type(self.type, p.size) is None:
                reasons.append(
                    f"node `{p.node}`: no AWS instance type has {p.size.cpu} vCPUs and "
                    f"{p.size.ram_gb:g} GiB of RAM; give component `{p.component}` "
                    f"`clouds: {{aws: {{instance_type: …}}}}`"
                )
            reasons.extend(reserved_labels(p, "tags"))
        return reasons

    def render(self, root: CloudRoot) -> dict[str, Any]:
        settings = root.settings
        # Nodes with a built AMI boot it by id: no lookup of their native image.
        images = sorted({p.image for p in root.placements if not p.built_image})
        data: dict[str, Any] = {}
        if images:
            data["aws_ami"] = {image_data_name(i): self._ami(root, i) for i in images}
        if "subnet_id" in settings and "vpc_id" not in settings:
            data["aws_subnet"] = {"selected": {"id": escape(str(settings["subnet_id"]))}}
        public = bool(settings.get("associate_public_ip", True))
        return {
            "//": f"slipstream deployment {escape(root.deployment)} on cloud {root.cloud}",
            "terraform": {
                "required_version": ">= 1.4.0",
                "required_providers": {"aws": {"source": "hashicorp/aws", "version": "~> 6.25"}},
            },
            "provider": {"aws": {"region": escape(str(settings["region"]))}},
            "variable": VARIABLES,
            **({"data": data} if data else {}),
            "resource": {
                "aws_security_group": {
                    resource_name(p.node): self._security_group(root, p) for p in root.placements
                },
                "aws_instance": {
                    resource_name(p.node): self._instance(root, p) for p in root.placements
                },
            },
            "output": instances_output(
                "aws_instance",
                root.placements,
                address="r.public_ip" if public else "r.private_ip",
            ),
        }

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """The resource block (to merge under ``resource``) that bakes the instance at
        Terraform address ``instance_address`` into an AMI called ``name``; the AMI id is
        ``aws_ami_from_instance.<image_data_name(name)>.id``.

        Example:
            >>> block = MAPPING.snapshot('aws_instance.web["1"]', "webapp-web-1a2b")
            >>> block["aws_ami_from_instance"]["webapp-web-1a2b"]["source_instance_id"]
            '${aws_instance.web["1"].id}'
        """
        snapshot_source(self.instance_resource, instance_address)
        return {
            "aws_ami_from_instance": {
                image_data_name(name): {
                    "name": escape(name),
                    "source_instance_id": f"${{{instance_address}.id}}",
                    "tags": {f"{RESERVED_PREFIX}run": "${var.run_id}"},
                }
            }
        }

    def _ami(self, root: CloudRoot, image: str) -> dict[str, Any]:
        found = escape_tree(dict(image_lookup(self.type, image, dict(root.settings))))
        return {
            "most_recent": True,
            "owners": [found["owner"]],
            "filter": [{"name": "name", "values": [found["name"]]}],
        }

    def _security_group(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        # AWS caps name_prefix at 100 characters; the run id goes in whole.
        prefix = f"{escape(root.deployment)}-{p.node}"[:40]
        group: dict[str, Any] = {
            "name_prefix": f"{prefix}-${{var.run_id}}-",
            "description": f"slipstream {root.deployment} {p.node}",
            "ingress": [_rule(port, "tcp", f"port {port}") for port in firewall_ports(p)],
            "egress": [_rule(0, "-1", "all outbound")],
            "tags": labels(root, p, None),
            "lifecycle": {"create_before_destroy": True},
        }
        if "vpc_id" in root.settings:
            group["vpc_id"] = escape(str(root.settings["vpc_id"]))
        elif "subnet_id" in root.settings:
            group["vpc_id"] = "${data.aws_subnet.selected.vpc_id}"
        return group

    def _instance(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        settings, overrides = root.settings, p.overrides
        instance_type = overrides.get("instance_type") or machine_type(self.type, p.size)
        tags = {
            "Name": f"{escape(root.deployment)}-{p.node}-${{each.key}}",
            **instance_labels(root, p, overrides.get("tags")),
        }
        instance: dict[str, Any] = {
            "for_each": instance_map(p),
            "ami": escape(p.built_image) or f"${{data.aws_ami.{image_data_name(p.image)}.id}}",
            "instance_type": escape(str(instance_type)),
            "vpc_security_group_ids": [f"${{aws_security_group.{resource_name(p.node)}.id}}"],
            "associate_public_ip_address": bool(settings.get("associate_public_ip", True)),
            "root_block_device": {
                "volume_size": int(overrides.get("volume_size", p.size.disk_gb)),
                "volume_type": "gp3",
            },
            # IMDSv2 only: the user data holds the agent token, which IMDSv1 gives to any SSRF.
            "metadata_options": {"http_endpoint": "enabled", "http_tokens": "required"},
            "user_data": user_data(),
            "tags": tags,
            "lifecycle": {"ignore_changes": ["ami", "user_data"]},
        }
        for key in ("subnet_id", "key_name"):
            if key in settings:
                instance[key] = escape(str(settings[key]))
        return instance


def _rule(port: int, protocol: str, description: str) -> dict[str, Any]:
    # Inline rules are attributes-as-blocks: JSON must spell out every field.
    return {
        "description": description,
        "from_port": port,
        "to_port": port,
        "protocol": protocol,
        "cidr_blocks": ["0.0.0.0/0"],
        "ipv6_cidr_blocks": [],
        "prefix_list_ids": [],
        "security_groups": [],
        "self": False,
    }


MAPPING = AwsMapping()
