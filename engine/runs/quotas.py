r"""Quotas: how many instances (and CPUs, GiB of RAM) a user may hold on one cloud.

A quota row is (user, cloud) → limits; a missing limit is no limit, and a user without a
row of their own gets the row of user ``*`` (everyone's default), if any. What a user holds
now is every instance of their runs that is not removed (a run's instances are removed when
it is destroyed), sized by its node's size in the run's spec. :meth:`Quotas.check` is
called before anything of a new run exists (deploy) and by whatever adds instances to a
run (scale-up), so a refusal changes nothing.

Example:
    >>> from engine.store.runstore import RunStore
    >>> quotas = Quotas(RunStore.open("sqlite://"))
    >>> quotas.set("alice", "aws-eu", instances=20)
    >>> quotas.check("alice", "aws-eu", Amount(instances=4))
    >>> try:
    ...     quotas.check("alice", "aws-eu", Amount(instances=21))
    ... except QuotaExceeded as err:
    ...     print(str(err).replace(") ", ")\n"))
    quota `aws-eu instances` exceeded (quota 20, current 0, requested 21)
    for user `alice`
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from engine.errors import Conflict
from engine.store.runstore import RunStore
from providers_map.size import SIZES

EVERYONE = "*"


@dataclass(frozen=True, slots=True)
class Amount:
    """A number of instances with their CPUs and GiB of RAM."""

    instances: int = 0
    cpu: int = 0
    ram_gb: float = 0.0

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.instances + other.instances, self.cpu + other.cpu, self.ram_gb + other.ram_gb
        )


@dataclass(frozen=True, slots=True)
class Quota:
    """The limits of one user on one cloud (None: unlimited)."""

    user: str
    cloud: str
    instances: int | None
    cpu: int | None
    ram_gb: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "cloud": self.cloud,
            "instances": self.instances,
            "cpu": self.cpu,
            "ram_gb": self.ram_gb,
        }


class QuotaExceeded(Conflict):
    """A request would take a user over a quota; nothing was started."""


def size_amount(size_text: str) -> Amount:
    """One instance of a size as a run's spec writes it (``small``, ``cpu=2,ram_gb=4,…``).

    >>> size_amount("medium"), size_amount("cpu=3,ram_gb=6,disk_gb=20")
    (Amount(instances=1, cpu=2, ram_gb=4.0), Amount(instances=1, cpu=3, ram_gb=6.0))
    """
    if size_text in SIZES:
        cpu, ram, _ = SIZES[size_text]
        return Amount(1, cpu, ram)
    fields = dict(part.partition("=")[::2] for part in size_text.split(",") if "=" in part)
    try:
        return Amount(1, int(fields.get("cpu", 0)), float(fields.get("ram_gb", 0)))
    except ValueError:
        return Amount(1)


class Quotas:
    """Quota rows in the run store's database, and the check against them."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.db = store.database

    def set(
        self,
        user: str,
        cloud: str,
        instances: int | None = None,
        cpu: int | None = None,
        ram_gb: float | None = None,
    ) -> None:
        """Set (replace) the limits of ``user`` on ``cloud``; all None removes the row."""
        for name, value in (("instances", instances), ("cpu", cpu), ("ram", ram_gb)):
            if value is not None and value < 0:
                raise ValueError(f"quota `{name}` must not be negative")

        def write(conn: Any) -> None:
            conn.execute("DELETE FROM quotas WHERE user_name = ? AND cloud = ?", (user, cloud))
            if (instances, cpu, ram_gb) != (None, None, None):
                conn.execute(
                    "INSERT INTO quotas (user_name, cloud, instances, cpu, ram_gb, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (user, cloud, instances, cpu, ram_gb, time.time()),
                )

        self.store.write(write)

    def list(self, user: str | None = None) -> list[Quota]:
        """Quota rows (of ``user`` and everyone's defaults, or all), by user and cloud."""
        sql = "SELECT user_name, cloud, instances, cpu, ram_gb FROM quotas"
        args: tuple[object, ...] = ()
        if user is not None:
            sql += " WHERE user_name IN (?, ?)"
            args = (user, EVERYONE)
        rows = self.db.fetch_all(sql + " ORDER BY user_name, cloud", args)
        return [Quota(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def of(self, user: str, cloud: str) -> Quota | None:
        """The quota that applies to ``user`` on ``cloud``: their own, else everyone's."""
        found = {q.user: q for q in self.list(user) if q.cloud == cloud}
        return found.get(user) or found.get(EVERYONE)

    def current(self, user: str, cloud: str) -> Amount:
        """What ``user``'s runs hold on ``cloud`` now (instances not removed)."""
        rows = self.db.fetch_all(
            "SELECT r.id, r.spec, i.node FROM instances i JOIN runs r ON r.id = i.run_id"
            ' WHERE r."user" = ? AND i.cloud = ? AND NOT i.removed',
            (user, cloud),
        )
        total = Amount()
        sizes: dict[str, dict[str, str]] = {}
        for run_id, spec, node in rows:
            if run_id not in sizes:
                nodes = json.loads(spec or "{}").get("nodes", {})
                sizes[run_id] = {n: str(b.get("size", "")) for n, b in nodes.items()}
            total = total + size_amount(sizes[run_id].get(node, ""))
        return total

    def check(self, user: str, cloud: str, requested: Amount) -> None:
        """Raise :class:`QuotaExceeded` when ``requested`` more would take ``user`` over
        their quota on ``cloud`` (what the scaling code calls before adding instances)."""
        quota = self.of(user, cloud)
        if quota is None or requested.instances <= 0:
            return
        current = self.current(user, cloud)
        for what, limit, now, more in (
            ("instances", quota.instances, current.instances, requested.instances),
            ("cpu", quota.cpu, current.cpu, requested.cpu),
            ("ram", quota.ram_gb, current.ram_gb, requested.ram_gb),
        ):
            if limit is not None and now + more > limit:
                raise QuotaExceeded(
                    f"quota `{cloud} {what}` exceeded (quota {limit:g}, current {now:g}, "
                    f"requested {more:g}) for user `{user}`"
                )
