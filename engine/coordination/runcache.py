"""RunCache: what the serving process knows of a run's parameters, votes and flags.

Agents read far more than they write, and hundreds of them wake together; reading from
memory instead of the database is what keeps a 500-instance barrier fast. Every write
still goes to the store first (stored before acknowledged); the cache is updated after,
and only by the process that serves the run's agents. The state and the abort flag may
also be changed by another process (``slipstream destroy``), so they are re-read from the
store when older than :data:`FLAGS_TTL_S`.

Example:
    >>> cache = RunCache({"ss:state": "Ready"}, {})
    >>> cache.values["ss:state"]
    'Ready'
"""

from __future__ import annotations

import time
from dataclasses import dataclass

FLAGS_TTL_S = 0.5


@dataclass
class RunCache:
    """Parameters and voters of one run, plus its state and abort flag with their age."""

    values: dict[str, str]
    voters: dict[str, set[str]]
    state: str = ""
    abort: str | None = None
    flags_at: float = 0.0

    def flags_fresh(self) -> bool:
        return time.monotonic() - self.flags_at < FLAGS_TTL_S

    def set_flags(self, state: str, abort: str | None) -> None:
        self.state, self.abort, self.flags_at = state, abort, time.monotonic()
