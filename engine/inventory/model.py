"""What an inventory finds, as types: instances seen in a cloud or in a run's state, and
the findings that compare them.

Example:
    >>> f = Finding("ghost", "aws-eu", "i-0abc", "0f3a", "web.1", "terminated in the cloud")
    >>> str(f)
    'ghost   aws-eu  i-0abc  run 0f3a web.1: terminated in the cloud'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The kinds of finding, in the order they are shown.
KINDS = ("orphan", "ghost", "drift", "unchecked")
#: Cloud states of an instance that is gone or going.
GONE = frozenset({"terminated", "shutting-down"})


@dataclass(frozen=True, slots=True)
class CloudInstance:
    """An instance a cloud lists with this service's labels; ``run_id`` and ``instance``
    are what its labels say (empty when missing).

    Example:
        >>> CloudInstance("i-0abc", "0f3a", "web.1", "terminated").live
        False
    """

    id: str
    run_id: str
    instance: str
    status: str

    @property
    def live(self) -> bool:
        return self.status not in GONE


@dataclass(frozen=True, slots=True)
class StateInstance:
    """An instance a run's Terraform state holds: its resource address and cloud id."""

    run_id: str
    cloud: str
    instance: str
    address: str
    id: str
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not match: ``kind`` is one of :data:`KINDS`; ``id`` is the
    cloud's id of the instance (empty when unknown)."""

    kind: str
    cloud: str
    id: str
    run_id: str
    instance: str
    message: str
    known_run: bool = True  # an orphan's run is one of this service's

    def __str__(self) -> str:
        who = f"run {self.run_id} {self.instance}".rstrip() if self.run_id else self.instance
        where = "  ".join(x for x in (self.cloud, self.id, who) if x)
        return f"{self.kind:<7} {where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CloudReport:
    """One cloud's inventory: what it lists (``listed`` is False where listing is not
    supported or the cloud could not be asked, ``failed``; ``note`` says why), how many
    instances the runs' states hold there, and the findings."""

    cloud: str
    type: str
    listed: bool
    instances: tuple[CloudInstance, ...]
    in_states: int
    findings: tuple[Finding, ...]
    note: str = ""
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "type": self.type,
            "listed": self.listed,
            "note": self.note,
            "failed": self.failed,
            "instances": [asdict(i) for i in self.instances],
            "in_states": self.in_states,
            "findings": [f.to_json() for f in self.findings],
        }
