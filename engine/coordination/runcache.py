"""RunCache: what the serving process knows of a run: spec, parameters, votes, state, abort.

Agents read far more than they write, and hundreds wake together; answering from memory
is what keeps a 500-instance barrier fast. Every write still goes to the store first
(stored before acknowledged) and reaches the cache after its commit, in commit order, on
the store's writer thread. A state or abort set by another process is picked up by
:meth:`engine.coordination.coordinator.Coordinator.refresh`.

Example:
    >>> cache = RunCache({"nodes": {}}, {"ss:state": "Ready"}, {}, set(), "Ready", None, 0.0)
    >>> cache.barrier_complete("Ready")
    False
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

#: The barrier states, each with the state its completed barrier moves the run to.
NEXT_STATE = {"Provisioning": "Executing", "Executing": "SendingReports", "SendingReports": "Ready"}
#: Barriers that hold only once the engine has done its own part (the clouds are applied).
ARMED_BY_ENGINE = frozenset({"Provisioning"})


@dataclass
class RunCache:
    """One run as its serving process sees it."""

    spec: dict[str, Any]
    values: dict[str, str]
    voters: dict[str, set[str]]
    expected: set[str]  # instances whose votes the barriers wait for
    state: str
    abort: str | None
    state_since: float
    armed: set[str] = field(default_factory=set)
    # Source key → the mapped inputs that take its value (keys.mapped_copies of the spec).
    copies: dict[str, list[str]] = field(default_factory=dict)
    # Events each instance has posted (counted from the store on its first post here).
    posted: dict[str, int] = field(default_factory=dict)
    advancing: str | None = None  # the barrier whose state move is being written
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def voters_of(self, state: str) -> set[str]:
        return self.voters.setdefault(state, set())

    def barrier_complete(self, state: str) -> bool:
        """Whether the run may leave ``state`` now: a barrier state, armed, every vote in."""
        voters = self.voters_of(state)
        return (
            state in NEXT_STATE
            and state in self.armed
            and self.abort is None
            # The count first: every vote asks, and only the last ones need the whole check.
            and len(voters) >= len(self.expected)
            and self.expected <= voters
        )
