"""The store writes of a scale action: instances added or removed, the run's spec, and the
votes of the barrier states cleared for a new round (each one transaction).

A scale round takes the run from Ready through the barrier states again, so the votes of
the previous round must go; an instance's row is never deleted (its index is never reused,
and its parameters stay readable), only marked removed, which stops its token at once.

Example:
    >>> from engine.store.runstore import NewInstance, NewRun, RunStore
    >>> store = RunStore.open("sqlite://")
    >>> store.create_run(NewRun("r1", "cluster", "alice", "on-success", 60, "{}"), [], {})
    >>> add_instances(store, "r1", [NewInstance("w.3", "w", 3, "local", "h3")], {}, "{}")
    >>> remove_instances(store, "r1", ["w.3"], "{}")
    >>> [(i["name"], i["removed"]) for i in store.instances("r1")]
    [('w.3', True)]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from engine.store.database import Connection
from engine.store.runstore import NewInstance, RunStore

_INSERT_INSTANCE = (
    "INSERT INTO instances (run_id, name, node, idx, cloud, token_hash, removed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_PARAM = (
    "INSERT INTO params (run_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,"
    " updated_at = excluded.updated_at"
)
_SET_SPEC = "UPDATE runs SET spec = ?, updated_at = ? WHERE id = ?"


def add_instances(
    store: RunStore,
    run_id: str,
    new: Iterable[NewInstance],
    params: Mapping[str, str],
    spec: str,
) -> None:
    """Store new instances with their first parameters and the run's new spec."""
    now = time.time()
    rows = [(run_id, i.name, i.node, i.idx, i.cloud, i.token_hash, False) for i in new]
    values = [(run_id, k, v, now) for k, v in params.items()]

    def write(conn: Connection) -> None:
        conn.executemany(_INSERT_INSTANCE, rows)
        conn.executemany(_UPSERT_PARAM, values)
        conn.execute(_SET_SPEC, (spec, now, run_id))

    store.write(write)


def remove_instances(store: RunStore, run_id: str, names: Iterable[str], spec: str) -> None:
    """Mark instances removed (their tokens stop working) and store the run's new spec."""
    now = time.time()
    rows = [(True, run_id, name) for name in names]

    def write(conn: Connection) -> None:
        conn.executemany("UPDATE instances SET removed = ? WHERE run_id = ? AND name = ?", rows)
        conn.execute(_SET_SPEC, (spec, now, run_id))

    store.write(write)


def set_spec(store: RunStore, run_id: str, spec: str) -> None:
    """Replace the run's stored spec (what a restarted server coordinates it by)."""
    store.write(lambda conn: conn.execute(_SET_SPEC, (spec, time.time(), run_id)))


def clear_votes(store: RunStore, run_id: str, states: Iterable[str]) -> None:
    """Forget every vote for ``states`` (a new round of their barriers starts)."""
    rows = [(run_id, state) for state in states]
    store.write(
        lambda conn: conn.executemany("DELETE FROM votes WHERE run_id = ? AND state = ?", rows)
    )
