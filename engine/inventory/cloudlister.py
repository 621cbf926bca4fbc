"""What the inventory needs of a cloud type: the interface every lister implements.

A lister says what a cloud holds (:meth:`CloudLister.instances`), how its instances match
those of the runs' states (by cloud id, or by run and instance name where the cloud has
no ids of its own), what an instance missing from the cloud means, and how to remove one.

Example:
    >>> CloudLister.match_by, CloudLister.missing_kind
    ('id', 'ghost')
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from engine.errors import SlipstreamError
from engine.inventory.model import CloudInstance, StateInstance
from engine.recipes.clouds import Cloud


class ListingUnsupported(SlipstreamError):
    """No lister exists yet for a cloud type."""


class CloudLister(ABC):
    """What the inventory needs of one cloud type (subclasses set ``type``)."""

    type: ClassVar[str] = ""
    #: "id": instances match the states' by cloud id; "name": by run and instance name.
    match_by: ClassVar[str] = "id"
    #: The finding for an instance of a state that the cloud no longer has.
    missing_kind: ClassVar[str] = "ghost"

    @abstractmethod
    def instances(self, cloud: Cloud, service: str) -> list[CloudInstance]:
        """Every instance of ``cloud`` labelled ``slipstream-service=service`` (gone ones
        too, where the cloud still shows them); CloudError when the cloud cannot be asked."""

    @abstractmethod
    def terminate(self, cloud: Cloud, instances: Sequence[CloudInstance]) -> None:
        """Remove ``instances`` from ``cloud``."""

    def missing(self, state: StateInstance, seen: CloudInstance | None) -> str:
        """Why ``state``'s instance counts as gone (``seen``: how the cloud shows it)."""
        if seen is not None:
            return f"in the run's state, {seen.status} in the cloud"
        return "in the run's state, not found in the cloud"
