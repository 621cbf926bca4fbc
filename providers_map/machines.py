"""Helpers shared by the mappings of clouds that boot virtual machines (aws, openstack, …):
names of image data sources, firewall ports, and labels (tags or metadata).

Example:
    >>> image_data_name("ubuntu-22.04")
    'ubuntu-22-04'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from providers_map.base import CloudRoot, NodePlacement, escape_tree, user_tags

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
    may replace ``Name``) and the run id; ``slipstream-*`` keys always stay ours.

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
    return {**own, **user_tags(root, p), f"{RESERVED_PREFIX}run": "${var.run_id}"}


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
