"""Usage: instance-hours per user, cloud and size, read from the runs' events.

An instance counts from the moment its cloud's root was applied (the ``terraform`` event
``<cloud>: apply done``) to the moment it was destroyed (``<cloud>: destroy done``), or
until now while it lives. Instances added or removed later (scaling) post ``instance``
events whose data is ``{"instance": "web.3", "change": "up" | "down"}``; such an event
replaces the root's times for that instance. ``since`` clips every interval, so usage
"since Monday" counts only the hours after Monday.

Example:
    >>> from engine.store.runstore import NewInstance, NewRun, RunStore
    >>> store = RunStore.open("sqlite://")
    >>> spec = '{"nodes": {"web": {"size": "small"}}}'
    >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, spec),
    ...                  [NewInstance("web.1", "web", 1, "local", "h")], {})
    >>> measure(store, now=None)[0].cloud
    'local'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from engine.store.runstore import RunFilter, RunRecord, RunStore

PAGE = 1000


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Hours of instances of one user, on one cloud, of one size."""

    user: str
    cloud: str
    size: str
    instances: int
    hours: float

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "cloud": self.cloud,
            "size": self.size,
            "instances": self.instances,
            "hours": round(self.hours, 4),
        }


def measure(
    store: RunStore, user: str | None = None, since: float | None = None, now: float | None = None
) -> list[UsageRow]:
    """Usage rows sorted by user, cloud and size (instances never started count 0 hours)."""
    now = time.time() if now is None else now
    users = (user,) if user is not None else None
    totals: dict[tuple[str, str, str], list[float]] = {}
    for run in store.list_runs(where=RunFilter(users=users, limit=1_000_000)):
        for cloud, size, hours in _run_hours(store, run, since, now):
            entry = totals.setdefault((run.user, cloud, size), [0, 0.0])
            entry[0] += 1
            entry[1] += hours
    return [
        UsageRow(u, c, s, int(count), hours) for (u, c, s), (count, hours) in sorted(totals.items())
    ]


def _run_hours(
    store: RunStore, run: RunRecord, since: float | None, now: float
) -> list[tuple[str, str, float]]:
    """(cloud, size, hours) of each instance of one run."""
    applied: dict[str, float] = {}
    destroyed: dict[str, float] = {}
    own: dict[str, dict[str, float]] = {}
    after = 0
    while True:
        page = store.events(run.id, after, PAGE)
        for event in page:
            after = event.id
            if event.kind == "terraform":
                cloud, _, what = event.message.partition(": ")
                if what == "apply done":
                    applied.setdefault(cloud, event.at)
                elif what == "destroy done":
                    destroyed[cloud] = event.at
            elif event.kind == "instance" and event.data.get("change") in ("up", "down"):
                times = own.setdefault(str(event.data.get("instance")), {})
                times.setdefault(str(event.data["change"]), event.at)
        if len(page) < PAGE:
            break
    sizes = {n: str(b.get("size", "")) for n, b in json.loads(run.spec).get("nodes", {}).items()}
    found = []
    for inst in store.instances(run.id):
        cloud = inst["cloud"]
        times = own.get(inst["name"], {})
        start = times.get("up", applied.get(cloud))
        end = times.get("down", destroyed.get(cloud))
        if end is None and run.checkpoint == "destroyed":
            end = run.updated_at
        hours = 0.0
        if start is not None:
            end = now if end is None else end
            start = max(start, since) if since is not None else start
            hours = max(0.0, end - start) / 3600
        if since is not None and start is None and run.created_at < since:
            continue
        if since is not None and hours == 0.0 and start is not None:
            continue
        found.append((cloud, sizes.get(inst["node"], ""), hours))
    return found
