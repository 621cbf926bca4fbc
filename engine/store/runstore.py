"""RunStore: runs, instances, runtime parameters, votes, events and reports.

SQLite in the service home by default, or PostgreSQL from ``SLIPSTREAM_DATABASE_URL``,
spoken in plain SQL through the stdlib ``sqlite3`` or psycopg 3 (see
:mod:`engine.store.database`); the schema is made by Alembic migrations, imported only
when the schema is behind. Every write goes through one group-commit thread
(:mod:`engine.store.groupcommit`): the ``put_*`` and ``move_state`` methods return a
future, the others wait for the commit, so a value is stored before any agent or user is
told it was accepted.

A *fenced* write reads the run's abort flag and state in the transaction it would write in,
and writes nothing (its future raises :class:`Fenced`) once the run is aborted or over,
whichever process aborted it; what agents post besides values and votes (events, reports,
an abort) is fenced once the run is over.

Example:
    >>> store = RunStore.open("sqlite://")
    >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
    >>> store.get_run("r1").state
    'Initializing'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import SlipstreamError, StoreError
from engine.store.database import Connection, Database, open_database
from engine.store.groupcommit import GroupWriter, Refused

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision; tests check it matches engine/store/migrations/versions.
HEAD_REVISION = "0006"
# Every table of the schema at HEAD_REVISION: a store missing one is damaged.
TABLES = frozenset(
    {"alembic_version", "runs", "instances", "params", "votes", "events", "reports"}
    | {"users", "tokens", "grants", "identities"}
    | {"quotas", "images", "run_files"}
    | {"repositories", "deliveries", "declared", "review_comments"}
)
# States in which a fenced write is refused, besides any state of an aborted run.
FENCED_STATES = ("Done", "Aborted", "Cancelled")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewRun:
    """What is known of a run when it is created."""

    id: str
    deployment: str
    user: str
    keep_running: str
    timeout_s: int
    spec: str
    # Where the run came from (repository, commit, declaration, trigger), as JSON text.
    origin: str = "{}"
    # "" (no approval needed), "pending", "approved" or "rejected".
    approval: str = ""


@dataclass(frozen=True, slots=True)
class NewInstance:
    name: str
    node: str
    idx: int
    cloud: str
    token_hash: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored."""

    id: str
    deployment: str
    user: str
    state: str
    state_since: float
    created_at: float
    updated_at: float
    abort_message: str | None
    cancelled: bool
    keep_running: str
    timeout_s: int
    spec: str
    checkpoint: str
    error: str | None
    origin: str = "{}"
    approval: str = ""

    def brief(self) -> dict[str, Any]:
        """The run as listings show it (REST, notebooks).

        Example:
            >>> RunRecord("r1", "webapp", "ann", "Ready", 0, 1, 2, None, False, "always",
            ...           60, "{}", "", None).brief()["state"]
            'Ready'
        """
        return {
            "id": self.id,
            "deployment": self.deployment,
            "user": self.user,
            "state": self.state,
            "abort": self.abort_message,
            "approval": self.approval,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a listing wants: by state, deployment and owner, newest first, paged by
    ``before`` (the ``created_at`` of the last run of the previous page)."""

    states: tuple[str, ...] = ()
    deployment: str | None = None
    users: tuple[str, ...] | None = None  # None: every user's
    before: float | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a run's log."""

    id: int
    run_id: str
    at: float
    kind: str
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "message": self.message,
            "data": self.data,
        }


class Fenced(Refused, SlipstreamError):
    """A fenced write found its run aborted (``abort`` is the message) or over (``state``
    is Done, Cancelled or Aborted), and wrote nothing.

    Example:
        >>> str(Fenced("r1", "Executing", "db.1 failed"))
        'run `r1` is aborted: db.1 failed'
        >>> Fenced("r1", "Done", None).state
        'Done'
    """

    def __init__(self, run_id: str, state: str, abort: str | None) -> None:
        self.run_id = run_id
        self.state = state
        self.abort = abort
        why = f"is aborted: {abort}" if abort is not None else f"is {state}"
        super().__init__(f"run `{run_id}` {why}")


# "user" is a reserved word in PostgreSQL.
_RUN_COLUMNS = (
    'id, deployment, "user", state, state_since, created_at, updated_at, abort_message, '
    "cancelled, keep_running, timeout_s, spec, checkpoint, error, origin, approval"
)
_INSERT_RUN = (
    f"INSERT INTO runs ({_RUN_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, '', NULL, ?, ?)"
)
_INSERT_INSTANCE = (
    "INSERT INTO instances (run_id, name, node, idx, cloud, token_hash, removed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PARAM = "INSERT INTO params (run_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
_UPSERT_PARAM = (
    _INSERT_PARAM
    + " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,"
    + " updated_at = excluded.updated_at"
)
_UPSERT_VOTE = (
    "INSERT INTO votes (run_id, instance, state, at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (run_id, instance, state) DO UPDATE SET at = excluded.at"
)
_MOVE = "UPDATE runs SET state = ?, state_since = ?, updated_at = ? WHERE id = ?"
_ABORT = (
    "UPDATE runs SET abort_message = ?, cancelled = ?, updated_at = ?"
    " WHERE id = ? AND abort_message IS NULL"
)
_FLAGS = "SELECT state, abort_message FROM runs WHERE id = ?"
_INSERT_EVENT = "INSERT INTO events (run_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)"
# (kind, message, data) of an event written along with another change.
LogLine = tuple[str, str, Mapping[str, Any]]


def _event_row(run_id: str, at: float, line: LogLine) -> tuple[object, ...]:
    return (run_id, at, line[0], line[1], json.dumps(dict(line[2]), sort_keys=True))


_INSTANCE_COLUMNS = "run_id, name, node, idx, cloud, token_hash, removed"
_REPORT_COLUMNS = "run_id, instance, path, size, at"


class RunStore:
    """All persistent state of runs, behind one small API.

    Every write is committed by the one group-commit thread: ``put_*`` and ``move_state``
    hand back its future (``after(result)`` runs on that thread once committed, in commit
    order); the other writes are the same, waited for.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.is_sqlite = database.dialect == "sqlite"
        # Every write, on one connection: votes and parameters arrive in storms (every
        # instance at once) and commit together; SQLite has one writer anyway.
        self._group: GroupWriter[Connection] = GroupWriter(database.begin)
        self._fence_sql = (
            "SELECT state, abort_message, checkpoint FROM runs WHERE id = ?" + database.lock_row
        )
        # Scaled mode: a NOTIFY in the transaction of each coordination write, so the other
        # processes' caches and waiters learn of it at commit (engine.coordination.replicas).
        self.announce: Callable[[Connection, dict[str, Any]], None] | None = None

    @classmethod
    def open(cls, url: str) -> RunStore:
        """Connect (creating a SQLite file's folder), migrate to the latest schema, and
        check that every table is there; :class:`StoreError` says what is wrong.

        ``url``: ``sqlite:///PATH``, ``sqlite://`` (in memory), ``postgresql://…`` or
        ``postgresql+psycopg://…`` (``?options=-csearch_path%3DSCHEMA`` picks a schema).

        >>> import tempfile
        >>> garbage = Path(tempfile.mkdtemp()) / "runs.db"
        >>> _ = garbage.write_bytes(b"not a database, just bytes" * 100)
        >>> RunStore.open(f"sqlite:///{garbage}")
        Traceback (most recent call last):
        ...
        engine.errors.StoreError: the run store ... cannot be opened: file is not a database
        """
        store = cls(open_database(url))
        try:
            store.migrate()
            missing = sorted(TABLES - store.database.tables())
        except BaseException:
            store.close()
            raise
        if missing:
            store.close()
            names = ", ".join(f"`{name}`" for name in missing)
            raise StoreError(store.database.where, "is damaged", f"missing table(s) {names}")
        return store

    def close(self) -> None:
        """Commit queued writes, then close every connection.

        >>> store = RunStore.open("sqlite://")
        >>> store.close()
        >>> store.set_param("r1", "ss:category", "x")
        Traceback (most recent call last):
        ...
        RuntimeError: group writer is closed
        """
        self._group.close()
        self.database.close()

    def migrate(self) -> None:
        """Upgrade the schema to the latest migration; safe when several processes start
        at once (a file lock for SQLite, an advisory lock for PostgreSQL)."""
        if self.revision() == HEAD_REVISION:
            return  # the common case: skip importing Alembic and SQLAlchemy (half a second)
        from engine.store.migrate import upgrade

        try:
            upgrade(self.database, MIGRATIONS)
        except StoreError:
            raise
        except Exception as exc:  # SQLAlchemy's and Alembic's errors, whatever they are
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise StoreError(self.database.where, "cannot be migrated", reason) from exc

    def revision(self) -> str | None:
        """The schema's current Alembic revision, or None for an empty database."""
        if "alembic_version" not in self.database.tables():
            return None
        row = self.database.fetch_one("SELECT version_num FROM alembic_version")
        return None if row is None else str(row[0])

    def _write(self, write: Callable[[Connection], T]) -> T:
        return self._group.submit(write)

    def _fence(self, conn: Connection, run_id: str, aborted_too: bool = True) -> None:
        """Raise :class:`Fenced` when the run is over (or aborted, with ``aborted_too``).

        Without ``aborted_too`` (what agents report and log) an aborted or cancelled run
        still takes writes until it is destroyed: its agents send their reports and logs
        after the failure (they say why it failed); a Done or destroyed run takes none.
        """
        row = conn.execute(self._fence_sql, (run_id,)).fetchone()
        if row is None:
            return
        state, abort, checkpoint = row
        if aborted_too:
            refused = state in FENCED_STATES or abort is not None
        else:
            refused = state == "Done" or checkpoint == "destroyed"
        if refused:
            raise Fenced(run_id, state, abort)

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self, run: NewRun, new_instances: list[NewInstance], initial: Mapping[str, str]
    ) -> None:
        now = time.time()
        run_row: tuple[object, ...] = (run.id, run.deployment, run.user, "Initializing")
        run_row += (now, now, now, False, run.keep_running, run.timeout_s, run.spec)
        run_row += (run.origin, run.approval)
        instance_rows = [
            (run.id, i.name, i.node, i.idx, i.cloud, i.token_hash, False) for i in new_instances
        ]
        param_rows = [(run.id, k, v, now) for k, v in initial.items()]

        def write(conn: Connection) -> None:
            conn.execute(_INSERT_RUN, run_row)
            conn.executemany(_INSERT_INSTANCE, instance_rows)
            conn.executemany(_INSERT_PARAM, param_rows)

        self._write(write)

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.database.fetch_one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return _run_record(row) if row else None

    def run_flags(self, run_id: str) -> tuple[str, str | None] | None:
        """(state, abort message) of a run: the cheap read the coordination path needs."""
        row = self.database.fetch_one(_FLAGS, (run_id,))
        return (str(row[0]), row[1]) if row else None

    def list_runs(self, limit: int = 100, where: RunFilter | None = None) -> list[RunRecord]:
        """Runs, newest first (``where`` filters and pages them; its limit wins)."""
        where = where or RunFilter(limit=limit)
        clauses: list[str] = []
        args: list[object] = []
        if where.states:
            clauses.append(f"state IN ({', '.join('?' * len(where.states))})")
            args.extend(where.states)
        if where.deployment is not None:
            clauses.append("deployment = ?")
            args.append(where.deployment)
        if where.users is not None:
            if not where.users:
                return []
            clauses.append(f'"user" IN ({", ".join("?" * len(where.users))})')
            args.extend(where.users)
        if where.before is not None:
            clauses.append("created_at < ?")
            args.append(where.before)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self.database.fetch_all(
            sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, where.limit)
        )
        return [_run_record(row) for row in rows]

    def set_approval(self, run_id: str, approval: str, expect: str | None = None) -> bool:
        """Record a decision on a held run (only from ``expect`` when given)."""
        sql = "UPDATE runs SET approval = ?, updated_at = ? WHERE id = ?"
        args: tuple[object, ...] = (approval, time.time(), run_id)
        if expect is not None:
            sql += " AND approval = ?"
            args += (expect,)
        return self._write(lambda conn: conn.execute(sql, args).rowcount > 0)

    def write(self, write: Callable[[Connection], T]) -> T:
        """Run ``write(conn)`` in the writer's transaction (for the account store)."""
        return self._write(write)

    def write_later(self, write: Callable[[Connection], T]) -> Future[T]:
        """Queue ``write(conn)`` without waiting for it."""
        return self._group.submit_nowait(write)

    def move_state(
        self,
        run_id: str,
        state: str,
        *,
        expect: str | None = None,
        after: Callable[[bool], object] | None = None,
        event: LogLine | None = None,
    ) -> Future[bool]:
        """Move a run to ``state`` (only from ``expect`` when given) and set ``ss:state``;
        the future says whether it moved. ``after(moved)`` runs once committed; ``event``
        is logged in the same transaction when it moved.

        >>> store = RunStore.open("sqlite://")
        >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
        >>> store.move_state("r1", "Executing", expect="Provisioning").result()
        False
        >>> store.move_state("r1", "Provisioning", expect="Initializing").result()
        True
        """
        now = time.time()
        sql, args = _MOVE, [state, now, now, run_id]
        if expect is not None:
            sql, args = sql + " AND state = ?", [*args, expect]

        def write(conn: Connection) -> bool:
            moved = conn.execute(sql, args).rowcount > 0
            if moved:
                conn.execute(_UPSERT_PARAM, (run_id, "ss:state", state, now))
                if event is not None:
                    conn.execute(_INSERT_EVENT, _event_row(run_id, now, event))
                if self.announce is not None:
                    self.announce(conn, {"r": run_id, "k": "s", "s": state})
            return moved

        return self._group.submit_nowait(write, after)

    def set_state(self, run_id: str, state: str, *, expect: str | None = None) -> bool:
        """Move a run to ``state`` (only from ``expect`` when given); True when it moved."""
        return self._group.wait(lambda: self.move_state(run_id, state, expect=expect))

    def put_abort(
        self,
        run_id: str,
        message: str,
        cancelled: bool = False,
        after: Callable[[bool], object] | None = None,
        event: LogLine | None = None,
        *,
        fenced: bool = False,
    ) -> Future[bool]:
        """Raise the abort flag and set ``ss:abort``; the first message wins. The future
        says whether this call raised it; ``after(raised)`` runs once committed; ``event``
        is logged in the same transaction when it raised the flag. ``fenced``: refuse with
        :class:`Fenced` once the run is over.

        >>> store = RunStore.open("sqlite://")
        >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
        >>> store.put_abort("r1", "db.1 failed").result(), store.put_abort("r1", "no").result()
        (True, False)
        """
        now = time.time()

        def write(conn: Connection) -> bool:
            if fenced:
                self._fence(conn, run_id, aborted_too=False)
            raised = conn.execute(_ABORT, (message, cancelled, now, run_id)).rowcount > 0
            if raised:
                conn.execute(_UPSERT_PARAM, (run_id, "ss:abort", message, now))
                if event is not None:
                    conn.execute(_INSERT_EVENT, _event_row(run_id, now, event))
                if self.announce is not None:
                    self.announce(conn, {"r": run_id, "k": "a", "m": message, "c": cancelled})
            return raised

        return self._group.submit_nowait(write, after)

    def set_abort(self, run_id: str, message: str, cancelled: bool = False) -> bool:
        """Raise the abort flag; the first message wins. True when this call raised it."""
        return self._group.wait(lambda: self.put_abort(run_id, message, cancelled))

    def set_checkpoint(self, run_id: str, checkpoint: str, error: str | None = None) -> None:
        args = (checkpoint, error, time.time(), run_id)
        self._write(
            lambda conn: conn.execute(
                "UPDATE runs SET checkpoint = ?, error = ?, updated_at = ? WHERE id = ?", args
            )
        )

    # -- instances --------------------------------------------------------------------

    def instance_by_token(self, token_hash: str) -> tuple[str, str] | None:
        """(run id, instance name) owning a token, or None."""
        row = self.database.fetch_one(
            "SELECT run_id, name FROM instances WHERE token_hash = ? AND NOT removed",
            (token_hash,),
        )
        return (row[0], row[1]) if row else None

    def retire_instances(self, run_id: str) -> None:
        """Mark every instance of a run removed: its token stops working."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE instances SET removed = ? WHERE run_id = ?", (True, run_id)
            )
        )

    def instances(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.database.fetch_all(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE run_id = ? ORDER BY node, idx",
            (run_id,),
        )
        names = _INSTANCE_COLUMNS.split(", ")
        return [{**dict(zip(names, row, strict=True)), "removed": bool(row[6])} for row in rows]

    # -- parameters and votes ---------------------------------------------------------

    def put_params(
        self,
        run_id: str,
        values: Mapping[str, str],
        *,
        fenced: bool = False,
        after: Callable[[None], object] | None = None,
    ) -> Future[None]:
        """Store several values in one transaction (shared with concurrent writers); the
        future resolves once they are committed, after ``after(None)`` ran (in commit
        order). ``fenced``: refuse with :class:`Fenced` once the run is aborted or over.

        >>> store = RunStore.open("sqlite://")
        >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
        >>> store.put_params("r1", {"db.1:url": "pg://db"}, fenced=True).result()
        >>> store.set_abort("r1", "db.1 failed")
        True
        >>> store.put_params("r1", {"db.1:url": "pg://other"}, fenced=True).result()
        Traceback (most recent call last):
        ...
        engine.store.runstore.Fenced: run `r1` is aborted: db.1 failed
        >>> store.get_param("r1", "db.1:url")
        'pg://db'
        """
        now = time.time()
        rows = [(run_id, k, v, now) for k, v in values.items()]

        def write(conn: Connection) -> None:
            if fenced:
                self._fence(conn, run_id)
            conn.executemany(_UPSERT_PARAM, rows)
            if self.announce is not None:
                self.announce(conn, {"r": run_id, "k": "p", "v": dict(values)})

        return self._group.submit_nowait(write, after)

    def set_param(self, run_id: str, key: str, value: str) -> None:
        self.set_params(run_id, {key: value})

    def set_params(
        self, run_id: str, values: Mapping[str, str], after: Callable[[], None] | None = None
    ) -> None:
        """Store several values in one transaction (shared with concurrent writers);
        ``after`` runs once they are committed, in commit order."""
        done = None if after is None else (lambda _: after())
        self._group.wait(lambda: self.put_params(run_id, values, after=done))

    def get_param(self, run_id: str, key: str) -> str | None:
        row = self.database.fetch_one(
            "SELECT value FROM params WHERE run_id = ? AND key = ?", (run_id, key)
        )
        return None if row is None else str(row[0])

    def params(self, run_id: str) -> dict[str, str]:
        rows = self.database.fetch_all("SELECT key, value FROM params WHERE run_id = ?", (run_id,))
        return {k: v for k, v in rows}

    def put_vote(
        self,
        run_id: str,
        instance: str,
        state: str,
        *,
        fenced: bool = False,
        after: Callable[[None], object] | None = None,
    ) -> Future[None]:
        """Record that ``instance`` voted ``state`` (again is harmless); the future resolves
        once committed. ``fenced``: refuse with :class:`Fenced` once the run is aborted or
        over.

        >>> store = RunStore.open("sqlite://")
        >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
        >>> store.put_vote("r1", "web.1", "Executing", fenced=True).result()
        >>> store.voters("r1", "Executing")
        {'web.1'}
        """
        args = (run_id, instance, state, time.time())

        def write(conn: Connection) -> None:
            if fenced:
                self._fence(conn, run_id)
            conn.execute(_UPSERT_VOTE, args)
            if self.announce is not None:
                self.announce(conn, {"r": run_id, "k": "v", "i": instance, "s": state})

        return self._group.submit_nowait(write, after)

    def vote(self, run_id: str, instance: str, state: str) -> None:
        self._group.wait(lambda: self.put_vote(run_id, instance, state))

    def votes_by_state(self, run_id: str) -> dict[str, set[str]]:
        """Every vote of a run, in one query: state → instances that voted it."""
        found: dict[str, set[str]] = {}
        query = "SELECT state, instance FROM votes WHERE run_id = ?"
        for state, instance in self.database.fetch_all(query, (run_id,)):
            found.setdefault(state, set()).add(instance)
        return found

    def voters(self, run_id: str, state: str) -> set[str]:
        query = "SELECT instance FROM votes WHERE run_id = ? AND state = ?"
        return {row[0] for row in self.database.fetch_all(query, (run_id, state))}

    # -- events and reports -----------------------------------------------------------

    def put_event(
        self,
        run_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        fenced: bool = False,
    ) -> Future[int]:
        """Queue one line of the run's log; the future gives its id once committed
        (safe to call from an ``after`` callback: it does not wait). ``fenced``: refuse
        with :class:`Fenced` once the run is aborted or over (what agents post)."""
        args = (run_id, time.time(), kind, message, json.dumps(dict(data or {}), sort_keys=True))

        def write(conn: Connection) -> int:
            if fenced:
                self._fence(conn, run_id, aborted_too=False)
            row = conn.execute(_INSERT_EVENT + " RETURNING id", args).fetchone()
            return int(row[0])

        return self._group.submit_nowait(write)

    def add_event(
        self, run_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> int:
        return self._group.wait(lambda: self.put_event(run_id, kind, message, data))

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """One page of a run's log: up to ``limit`` events after the id ``after``, in
        order; page on with the last one's id until a page comes back short."""
        rows = self.database.fetch_all(
            "SELECT id, run_id, at, kind, message, data FROM events"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            (run_id, after, limit),
        )
        return [_event(r) for r in rows]

    def last_events(self, run_id: str, limit: int) -> tuple[list[Event], int]:
        """The run's last ``limit`` events, in order, and how many came before them.

        >>> store = RunStore.open("sqlite://")
        >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
        >>> for n in range(5):
        ...     _ = store.add_event("r1", "note", f"n{n}")
        >>> events, earlier = store.last_events("r1", 2)
        >>> [e.message for e in events], earlier
        (['n3', 'n4'], 3)
        """
        rows = self.database.fetch_all(
            "SELECT id, run_id, at, kind, message, data FROM events"
            " WHERE run_id = ? ORDER BY id DESC LIMIT ?",
            (run_id, limit),
        )
        events = [_event(r) for r in reversed(rows)]
        earlier = 0
        if len(events) == limit:
            found = self.database.fetch_one(
                "SELECT count(*) FROM events WHERE run_id = ? AND id < ?",
                (run_id, events[0].id),
            )
            earlier = int(found[0]) if found else 0
        return events, earlier

    def posted_events(self, run_id: str, instance: str) -> int:
        """How many events of ``kind`` agent the instance posted (their message starts
        with its name and a colon)."""
        prefix = f"{instance}:"
        found = self.database.fetch_one(
            "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'agent'"
            " AND substr(message, 1, ?) = ?",
            (run_id, len(prefix), prefix),
        )
        return int(found[0]) if found else 0

    def add_report(
        self, run_id: str, instance: str, path: str, size: int, *, fenced: bool = False
    ) -> None:
        """Record an instance's uploaded report; ``fenced``: refuse once the run is over."""
        args = (run_id, instance, path, size, time.time())

        def write(conn: Connection) -> None:
            if fenced:
                self._fence(conn, run_id, aborted_too=False)
            conn.execute(
                f"INSERT INTO reports ({_REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, instance) DO UPDATE SET path = excluded.path,"
                " size = excluded.size, at = excluded.at",
                args,
            )

        self._write(write)

    def reports(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.database.fetch_all(
            f"SELECT {_REPORT_COLUMNS} FROM reports WHERE run_id = ? ORDER BY instance",
            (run_id,),
        )
        names = _REPORT_COLUMNS.split(", ")
        return [dict(zip(names, row, strict=True)) for row in rows]


def _event(row: tuple[Any, ...]) -> Event:
    return Event(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    fields = list(row)
    fields[8] = bool(fields[8])  # cancelled: SQLite keeps booleans as 0 and 1
    return RunRecord(*fields)
