"""What every cloud mapping receives and returns, and helpers they share.

A mapping is pure: a :class:`CloudRoot` (the part of one deployment placed on one cloud)
in, a Terraform JSON document (a ``dict``) out. Every string that came from a user goes
through :func:`escape` so Terraform never evaluates ``${…}`` or ``%{…}`` in it.

Example:
    >>> escape('${file("/etc/passwd")}')
    '$${file("/etc/passwd")}'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from providers_map.size import Size

# Variables every root declares; the engine passes their values at plan time.
COMMON_VARIABLES: dict[str, Any] = {
    "run_id": {"type": "string", "description": "the run this root belongs to"},
    "service": {
        "type": "string",
        "default": "slipstream",
        "description": "the SlipStream service owning the run; every machine is labelled with it",
    },
}


class SnapshotUnsupported(NotImplementedError):
    """The cloud cannot turn an instance into an image; the message says why.

    Example:
        >>> from providers_map import mapping_for
        >>> mapping_for("ssh").snapshot('terraform_data.web["1"]', "img")
        Traceback (most recent call last):
        ...
        providers_map.base.SnapshotUnsupported: cloud type `ssh` cannot make images: ...
    """


@dataclass(frozen=True, slots=True)
class NodePlacement:
    """The instances of one node that land on one cloud."""

    node: str
    component: str
    description: str
    indices: tuple[int, ...]
    image: str
    size: Size
    ports: tuple[int, ...]
    packages: tuple[str, ...]
    overrides: Mapping[str, Any]
    # The id of a built image of the component on this cloud, booted instead of ``image``
    # (its install steps are baked in); "" when there is none.
    built_image: str = ""

    def instance(self, index: int) -> str:
        return f"{self.node}.{index}"


@dataclass(frozen=True, slots=True)
class CloudRoot:
    """Everything a mapping needs to render one Terraform root module."""

    cloud: str
    settings: Mapping[str, Any]
    deployment: str
    description: str
    placements: tuple[NodePlacement, ...]


class CloudMapping(ABC):
    """One cloud type. Subclasses set ``type`` and the two schemas, and render roots.

    ``settings_schema`` describes the cloud's entry in ``clouds.yaml`` (besides ``type``);
    ``override_schema`` describes ``clouds.<type>`` overrides in a component.

    Images: a mapping that can make them sets ``snapshot_resource`` and implements
    :meth:`snapshot`; one that cannot says why in ``cannot_snapshot``.
    """

    type: str = ""
    settings_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    override_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    # Terraform resource type whose instances hold one machine each.
    instance_resource: str = ""
    # Terraform resource type that :meth:`snapshot` adds; empty when the cloud cannot.
    snapshot_resource: ClassVar[str] = ""
    # Why this cloud cannot make an image of an instance (shown to users); empty when it can.
    cannot_snapshot: ClassVar[str] = ""
    # The engine itself saves an instance as an image (`local`: its sandbox as an archive),
    # so no Terraform resource is needed.
    engine_snapshots: ClassVar[bool] = False

    @property
    def can_snapshot(self) -> bool:
        """Whether :meth:`snapshot` makes images on this cloud.

        Example:
            >>> from providers_map import mapping_for
            >>> [mapping_for(t).can_snapshot for t in ("aws", "local", "ssh")]
            [True, True, False]
        """
        return bool(self.snapshot_resource) or self.engine_snapshots

    def snapshot(self, instance_address: str, name: str) -> dict[str, Any]:
        """The resource block (to merge under ``resource`` of a root this mapping rendered)
        that bakes the instance at Terraform address ``instance_address`` into an image
        called ``name``; the image id is the ``id`` of
        ``<snapshot_resource>.<machines.image_data_name(name)>``.

        Raises :class:`SnapshotUnsupported` (saying why) on clouds that cannot, and
        ValueError for an address that is not one of this mapping's instances.
        """
        raise SnapshotUnsupported(
            f"cloud type `{self.type}` cannot make images: {self.cannot_snapshot}"
        )

    def check(self, root: CloudRoot) -> list[str]:
        """Reasons the cloud cannot hold this root (empty when it can)."""
        return []

    @abstractmethod
    def render(self, root: CloudRoot) -> dict[str, Any]:
        """The Terraform JSON document of ``root``."""


def escape(text: str) -> str:
    """Make user text literal inside a Terraform JSON string."""
    return text.replace("${", "$${").replace("%{", "%%{")


def escape_tree(value: Any) -> Any:
    """:func:`escape` every string of a JSON-like value, keys included."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {escape(str(k)): escape_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_tree(v) for v in value]
    return value


def instance_map(placement: NodePlacement, **extra: Any) -> dict[str, dict[str, Any]]:
    """The ``for_each`` map of a placement: instance index (as text) → attributes."""
    return {
        str(i): {"instance": placement.instance(i), "index": i, **extra} for i in placement.indices
    }


def resource_name(node: str) -> str:
    """A Terraform identifier for a node (node names allow '-', which Terraform allows too)."""
    return node


def instances_output(
    resource_type: str, placements: tuple[NodePlacement, ...], address: str, ident: str = "r.id"
) -> dict[str, Any]:
    """An ``instances`` output: instance id (``web.1``) → {address, id}, over every node."""
    parts = [
        f'{{for k, r in {resource_type}.{resource_name(p.node)} : "{p.node}.${{k}}" => '
        f"{{address = {address}, id = {ident}}}}}"
        for p in placements
    ]
    expr = parts[0] if len(parts) == 1 else f"merge({', '.join(parts)})"
    return {
        "instances": {
            "description": "address and id of every instance, by instance name",
            "value": "${" + expr + "}",
        }
    }


def user_tags(root: CloudRoot, placement: NodePlacement) -> dict[str, str]:
    """Labels attached to a machine, escaped (descriptions are user text)."""
    return {
        "slipstream-deployment": escape(root.deployment),
        "slipstream-node": escape(placement.node),
        "slipstream-component": escape(placement.component),
        "slipstream-description": escape(root.description[:255]),
    }
