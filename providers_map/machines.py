"""Helpers shared by the mappings of clouds that boot virtual machines (aws, openstack, …):
names of image data sources and machines, firewall ports, labels (tags or metadata), and
the instance a snapshot starts from.

Every machine is labelled with the service that owns it (``slipstream-service``), its run
(``slipstream-run``) and its instance name (``slipstream-instance``, e.g. ``web.2``), so
the service can find its machines in a cloud account.

Example:
    >>> image_data_name("ubuntu-22.04")
    'ubuntu-22-04'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from providers_map.base import CloudRoot, NodePlacement, escape, escape_tree, user_tags
from providers_map.catalog import image_lookup, machine_type

# Labels the engine relies on to find a run's machines; component overrides cannot change them.
RESERVED_PREFIX = "slipstream-"
SSH_PORT = 22


def image_data_name(image: str) -> str:
    """A Terraform identifier for the data source that finds native ``image``.

    Example:
        >>> image_data_name("9front.1")
        'image-9front-1'
    """
    name = re.sub(r"[^A-Za-z0-9_-]", "-", image)
    return name if re.match(r"[A-Za-z_]", name) else f"image-{name}"


def firewall_ports(p: NodePlacement) -> list[int]:
    """Inbound TCP ports of a node's machines: the component's, plus SSH for operators.

    Example:
        >>> from providers_map.size import Size
        >>> web = NodePlacement("web", "web", "", (1,), "debian-12", Size.named("small"),
        ...                     (8080, 443), (), {})
        >>> firewall_ports(web)
        [22, 443, 8080]
    """
    return sorted({SSH_PORT, *p.ports})


def labels(root: CloudRoot, p: NodePlacement, extra: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags (or metadata) of a node's resources: ours, the component's ``extra`` (escaped,
    may replace ``Name``), the service and the run id; ``slipstream-*`` keys always stay
    ours.

    Example:
        >>> from providers_map.size import Size
        >>> web = NodePlacement("web", "web", "", (1,), "debian-12", Size.named("small"),
        ...                     (), (), {})
        >>> tags = labels(CloudRoot("aws-eu", {}, "shop", "", (web,)), web,
        ...               {"team": "${x}", "slipstream-node": "db"})
        >>> tags["team"], tags["slipstream-node"], tags["slipstream-run"]
        ('$${x}', 'web', '${var.run_id}')
    """
    own = {
        k: v for k, v in escape_tree(dict(extra or {})).items() if not k.startswith(RESERVED_PREFIX)
    }
    return {
        **own,
        **user_tags(root, p),
        f"{RESERVED_PREFIX}service": "${var.service}",
        f"{RESERVED_PREFIX}run": "${var.run_id}",
    }


def instance_labels(
    root: CloudRoot, p: NodePlacement, extra: Mapping[str, Any] | None
) -> dict[str, str]:
    """:func:`labels` of one machine of a ``for_each`` over instances, with its instance name.

    Example:
        >>> from providers_map.size import Size
        >>> web = NodePlacement("web", "web", "", (1,), "debian-12", Size.named("small"),
        ...                     (), (), {})
        >>> instance_labels(CloudRoot("c", {}, "shop", "", (web,)), web, None)[
        ...     "slipstream-instance"]
        '${each.value.instance}'
    """
    return {**labels(root, p, extra), f"{RESERVED_PREFIX}instance": "${each.value.instance}"}


def dns_name(text: str, limit: int = 63) -> str:
    """``text`` as a DNS label (lower case letters, digits and ``-``, starting with a
    letter), cut to ``limit``; for clouds that refuse anything else in names.

    Example:
        >>> dns_name("Torque_Master")
        'torque-master'
        >>> dns_name("9front")
        'n9front'
    """
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"n{name}"
    return name[:limit].rstrip("-")


def snapshot_source(resource_type: str, instance_address: str) -> tuple[str, str]:
    """The resource name and ``for_each`` key of ``instance_address``, an address of one
    machine of ``resource_type`` (``web`` alone for a whole node); ValueError otherwise, so
    no other text reaches a snapshot's expressions.

    Example:
        >>> snapshot_source("aws_instance", 'aws_instance.web["2"]')
        ('web', '2')
        >>> snapshot_source("aws_instance", "aws_instance.web")
        ('web', '')
    """
    found = re.fullmatch(
        re.escape(resource_type) + r'\.([A-Za-z_][\w-]*)(?:\["([\w.-]+)"\])?', instance_address
    )
    if found is None:
        raise ValueError(f"not an address of a {resource_type}: {instance_address!r}")
    return found.group(1), found.group(2) or ""


def reserved_labels(p: NodePlacement, key: str) -> list[str]:
    """Reasons for ``slipstream-*`` keys in the override ``key`` (a map of labels).

    Example:
        >>> from providers_map.size import Size
        >>> web = NodePlacement("web", "web", "", (1,), "debian-12", Size.named("small"),
        ...                     (), (), {"tags": {"slipstream-run": "x", "team": "y"}})
        >>> reserved_labels(web, "tags")  # doctest: +ELLIPSIS
        ['node `web`: tags `slipstream-run` is reserved (...)']
    """
    return [
        f"node `{p.node}`: {key} `{name}` is reserved (names starting with "
        f"`{RESERVED_PREFIX}` are set by SlipStream)"
        for name in sorted(p.overrides.get(key) or {})
        if str(name).startswith(RESERVED_PREFIX)
    ]


def images_setting(*keys: str) -> dict[str, Any]:
    """The JSON Schema of a cloud's ``images`` setting: native image name → lookup keys.

    Example:
        >>> images_setting("name")["additionalProperties"]["required"]
        ['name']
    """
    return {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "required": list(keys),
            "additionalProperties": False,
            "properties": {key: {"type": "string", "minLength": 1} for key in keys},
        },
    }


def missing_image(cloud_type: str, title: str, root: CloudRoot, p: NodePlacement) -> list[str]:
    """The reason a node's image cannot be found on the cloud, if it cannot.

    Example:
        >>> from providers_map.size import Size
        >>> p = NodePlacement("db", "db", "", (1,), "rocky-9", Size.named("small"), (), (), {})
        >>> print(*missing_image("azure", "Azure", CloudRoot("az", {}, "d", "", (p,)), p))
        node `db`: image `rocky-9` has no Azure image; add it under `images` in the cloud's settings
    """
    if image_lookup(cloud_type, p.image, dict(root.settings)) is not None:
        return []
    return [
        f"node `{p.node}`: image `{p.image}` has no {title} image; "
        f"add it under `images` in the cloud's settings"
    ]


def no_machine_type(cloud_type: str, title: str, p: NodePlacement, override: str) -> list[str]:
    """The reason no machine type fits a node's size, unless the component names one.

    Example:
        >>> from providers_map.size import Size
        >>> p = NodePlacement("db", "db", "", (1,), "debian-12", Size(999, 4, 10), (), (), {})
        >>> no_machine_type("google", "Google", p, "machine_type")  # doctest: +ELLIPSIS
        ['node `db`: no Google machine type has 999 vCPUs and 4 GiB of RAM; give ...']
    """
    if override in p.overrides or machine_type(cloud_type, p.size) is not None:
        return []
    return [
        f"node `{p.node}`: no {title} machine type has {p.size.cpu} vCPUs and "
        f"{p.size.ram_gb:g} GiB of RAM; give component `{p.component}` "
        f"`clouds: {{{cloud_type}: {{{override}: …}}}}`"
    ]


def header(root: CloudRoot, name: str, source: str, version: str) -> dict[str, Any]:
    """The head of a root on one provider: comment and ``terraform`` block.

    Example:
        >>> header(CloudRoot("gcp", {}, "shop", "", ()), "google", "hashicorp/google",
        ...        "~> 6.50")["terraform"]["required_providers"]
        {'google': {'source': 'hashicorp/google', 'version': '~> 6.50'}}
    """
    return {
        "//": f"slipstream deployment {escape(root.deployment)} on cloud {root.cloud}",
        "terraform": {
            "required_version": ">= 1.4.0",
            "required_providers": {name: {"source": source, "version": version}},
        },
    }
