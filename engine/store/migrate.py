"""Schema upgrades with Alembic, the only part of the store that needs SQLAlchemy.

Imported by :meth:`~engine.store.runstore.RunStore.migrate` only when the schema is behind
(a new database, or a new release), so everyday commands never pay for importing SQLAlchemy
and Alembic. Alembic runs on a SQLAlchemy connection made here, for the migration only.
Several processes may start on a new database at once: they take turns under a lock (a
file lock beside a SQLite file, an advisory lock in PostgreSQL) and Alembic, which reads
the revision under it, upgrades only once.

Example:
    >>> from engine.store.database import open_database
    >>> from engine.store.runstore import MIGRATIONS
    >>> db = open_database("sqlite://")
    >>> upgrade(db, MIGRATIONS)
    >>> db.fetch_one("SELECT version_num FROM alembic_version")
    ('0003',)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool, StaticPool

from engine.store.database import Database, PostgresDatabase, SqliteDatabase

_PG_LOCK_KEY = 7411001  # pg_advisory_xact_lock key of the run store's migrations


def upgrade(db: Database, scripts: Path) -> None:
    """Upgrade ``db``'s schema to the newest migration of the Alembic folder ``scripts``."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    if isinstance(db, SqliteDatabase) and db.path is None:
        with db.exclusive() as raw:
            # One connection is the whole in-memory database: Alembic borrows it.
            _run(config, create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool))
    elif isinstance(db, SqliteDatabase):
        assert db.path is not None
        with _file_lock(Path(f"{db.path}.migrate.lock")):
            _run(
                config,
                create_engine(
                    f"sqlite:///{db.path}", poolclass=NullPool, connect_args={"timeout": 60}
                ),
            )
    elif isinstance(db, PostgresDatabase):
        url = "postgresql+psycopg://" + db.conninfo.removeprefix("postgresql://")
        _run(
            config,
            create_engine(url, poolclass=NullPool),
            f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})",
        )
    else:
        raise TypeError(f"no migrations for {type(db).__name__}")


def _run(config: Config, engine: Engine, lock_sql: str | None = None) -> None:
    try:
        with engine.begin() as conn:
            if lock_sql is not None:
                conn.exec_driver_sql(lock_sql)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        if not isinstance(engine.pool, StaticPool):
            engine.dispose()  # a StaticPool's connection belongs to the store


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
