"""RunStore: runs, instances, runtime parameters, votes, events and reports.

SQLite in the service home by default (WAL, one writer at a time in this process), or
PostgreSQL from ``SLIPSTREAM_DATABASE_URL``; the schema is made by Alembic migrations.
Every write is committed before the call returns, so a value is stored before any agent
or user is told it was accepted.

Example:
    >>> store = RunStore.open("sqlite://")
    >>> store.create_run(NewRun("r1", "webapp", "alice", "on-success", 60, "{}"), [], {})
    >>> store.get_run("r1").state
    'Initializing'
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine.store.groupcommit import GroupWriter
from engine.store.tables import events, instances, params, reports, runs, votes

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision; tests check it matches engine/migrations/versions.
HEAD_REVISION = "0001"


@dataclass(frozen=True, slots=True)
class NewRun:
    """What is known of a run when it is created."""

    id: str
    deployment: str
    user: str
    keep_running: str
    timeout_s: int
    spec: str


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


_FLAGS = select(runs.c.state, runs.c.abort_message).where(runs.c.id == bindparam("run_id"))


class RunStore:
    """All persistent state of runs, behind one small API."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer; queueing here beats spinning on SQLITE_BUSY.
        self._write_lock = threading.RLock() if self.is_sqlite else None
        # Votes and parameters arrive in storms (every instance at once): commit together.
        self._group = GroupWriter(self._write)

    @classmethod
    def open(cls, url: str) -> RunStore:
        """Connect (creating the database file's folder) and migrate to the latest schema."""
        if url.startswith("sqlite"):
            memory = url in ("sqlite://", "sqlite:///:memory:")
            if not memory:
                Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 60},
                poolclass=StaticPool if memory else None,
                **({} if memory else {"pool_size": 16, "max_overflow": 48}),
            )
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_size=16, max_overflow=48, pool_pre_ping=True)
        store = cls(engine)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Upgrade the schema to the latest migration; safe when several processes start
        at once (a file lock for SQLite, an advisory lock for PostgreSQL)."""
        if self.revision() == HEAD_REVISION:
            return  # the common case: skip importing Alembic (half a second of start-up)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        database = self.engine.url.database
        lock_path = Path(f"{database}.migrate.lock") if self.is_sqlite and database else None
        with _file_lock(lock_path), self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411001)")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The schema's current Alembic revision, or None for an empty database."""
        try:
            with self.engine.connect() as conn:
                value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except SQLAlchemyError:
            return None
        return None if value is None else str(value)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _upsert(
        self, table: Any, values: dict[str, Any], keys: list[str], update_cols: list[str]
    ) -> Any:
        dialect = sqlite if self.is_sqlite else postgresql
        stmt = dialect.insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update_cols}
        )

    def _param_upsert(self, run_id: str, key: str, value: str, now: float) -> Any:
        return self._upsert(
            params,
            {"run_id": run_id, "key": key, "value": value, "updated_at": now},
            ["run_id", "key"],
            ["value", "updated_at"],
        )

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self, run: NewRun, new_instances: list[NewInstance], initial: Mapping[str, str]
    ) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(
                runs.insert().values(
                    id=run.id,
                    deployment=run.deployment,
                    user=run.user,
                    state="Initializing",
                    state_since=now,
                    created_at=now,
                    updated_at=now,
                    cancelled=False,
                    keep_running=run.keep_running,
                    timeout_s=run.timeout_s,
                    spec=run.spec,
                    checkpoint="",
                )
            )
            if new_instances:
                conn.execute(
                    instances.insert(),
                    [
                        {
                            "run_id": run.id,
                            "name": i.name,
                            "node": i.node,
                            "idx": i.idx,
                            "cloud": i.cloud,
                            "token_hash": i.token_hash,
                            "removed": False,
                        }
                        for i in new_instances
                    ],
                )
            if initial:
                conn.execute(
                    params.insert(),
                    [
                        {"run_id": run.id, "key": k, "value": v, "updated_at": now}
                        for k, v in initial.items()
                    ],
                )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        return RunRecord(**row) if row else None

    def run_flags(self, run_id: str) -> tuple[str, str | None] | None:
        """(state, abort message) of a run: the cheap read the coordination path needs."""
        with self.engine.connect() as conn:
            row = conn.execute(_FLAGS, {"run_id": run_id}).first()
        return (str(row[0]), row[1]) if row else None

    def list_runs(self, limit: int = 100) -> list[RunRecord]:
        query = select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [RunRecord(**r) for r in conn.execute(query).mappings()]

    def set_state(self, run_id: str, state: str, *, expect: str | None = None) -> bool:
        """Move a run to ``state`` (only from ``expect`` when given); True when it moved."""
        now = time.time()
        stmt = update(runs).where(runs.c.id == run_id)
        if expect is not None:
            stmt = stmt.where(runs.c.state == expect)
        with self._write() as conn:
            moved = conn.execute(stmt.values(state=state, state_since=now, updated_at=now))
            if moved.rowcount:
                conn.execute(self._param_upsert(run_id, "ss:state", state, now))
        return bool(moved.rowcount)

    def set_abort(self, run_id: str, message: str, cancelled: bool = False) -> bool:
        """Raise the abort flag; the first message wins. True when this call raised it."""
        now = time.time()
        with self._write() as conn:
            done = conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.abort_message.is_(None))
                .values(abort_message=message, cancelled=cancelled, updated_at=now)
            )
            if done.rowcount:
                conn.execute(self._param_upsert(run_id, "ss:abort", message, now))
        return bool(done.rowcount)

    def set_checkpoint(self, run_id: str, checkpoint: str, error: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(checkpoint=checkpoint, error=error, updated_at=time.time())
            )

    # -- instances --------------------------------------------------------------------

    def instance_by_token(self, token_hash: str) -> tuple[str, str] | None:
        """(run id, instance name) owning a token, or None."""
        query = select(instances.c.run_id, instances.c.name).where(
            instances.c.token_hash == token_hash, instances.c.removed.is_(False)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], row[1]) if row else None

    def retire_instances(self, run_id: str) -> None:
        """Mark every instance of a run removed: its token stops working."""
        with self._write() as conn:
            conn.execute(update(instances).where(instances.c.run_id == run_id).values(removed=True))

    def instances(self, run_id: str) -> list[dict[str, Any]]:
        query = (
            select(instances)
            .where(instances.c.run_id == run_id)
            .order_by(instances.c.node, instances.c.idx)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- parameters and votes ---------------------------------------------------------

    def set_param(self, run_id: str, key: str, value: str) -> None:
        self.set_params(run_id, {key: value})

    def set_params(
        self, run_id: str, values: Mapping[str, str], after: Callable[[], None] | None = None
    ) -> None:
        """Store several values in one transaction (shared with concurrent writers);
        ``after`` runs once they are committed, in commit order."""
        now = time.time()
        statements = [self._param_upsert(run_id, k, v, now) for k, v in values.items()]

        def write(conn: Connection) -> None:
            for statement in statements:
                conn.execute(statement)

        self._group.submit(write, None if after is None else lambda _: after())

    def get_param(self, run_id: str, key: str) -> str | None:
        query = select(params.c.value).where(params.c.run_id == run_id, params.c.key == key)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else str(value)

    def params(self, run_id: str) -> dict[str, str]:
        query = select(params.c.key, params.c.value).where(params.c.run_id == run_id)
        with self.engine.connect() as conn:
            return {k: v for k, v in conn.execute(query).all()}

    def vote(self, run_id: str, instance: str, state: str) -> None:
        statement = self._upsert(
            votes,
            {"run_id": run_id, "instance": instance, "state": state, "at": time.time()},
            ["run_id", "instance", "state"],
            ["at"],
        )
        self._group.submit(lambda conn: conn.execute(statement))

    def votes_by_state(self, run_id: str) -> dict[str, set[str]]:
        """Every vote of a run, in one query: state → instances that voted it."""
        query = select(votes.c.state, votes.c.instance).where(votes.c.run_id == run_id)
        found: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for state, instance in conn.execute(query).all():
                found.setdefault(state, set()).add(instance)
        return found

    def voters(self, run_id: str, state: str) -> set[str]:
        query = select(votes.c.instance).where(votes.c.run_id == run_id, votes.c.state == state)
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(query).all()}

    # -- events and reports -----------------------------------------------------------

    def add_event(
        self, run_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> int:
        with self._write() as conn:
            result = conn.execute(
                events.insert().values(
                    run_id=run_id,
                    at=time.time(),
                    kind=kind,
                    message=message,
                    data=json.dumps(dict(data or {}), sort_keys=True),
                )
            )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        query = (
            select(events)
            .where(events.c.run_id == run_id, events.c.id > after)
            .order_by(events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                Event(r["id"], r["run_id"], r["at"], r["kind"], r["message"], json.loads(r["data"]))
                for r in conn.execute(query).mappings()
            ]

    def add_report(self, run_id: str, instance: str, path: str, size: int) -> None:
        with self._write() as conn:
            conn.execute(
                self._upsert(
                    reports,
                    {
                        "run_id": run_id,
                        "instance": instance,
                        "path": path,
                        "size": size,
                        "at": time.time(),
                    },
                    ["run_id", "instance"],
                    ["path", "size", "at"],
                )
            )

    def reports(self, run_id: str) -> list[dict[str, Any]]:
        query = select(reports).where(reports.c.run_id == run_id).order_by(reports.c.instance)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None or str(path).startswith(":memory:"):
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
