"""Connections to the run store's database: SQLite (stdlib) or PostgreSQL (psycopg 3).

The store speaks one SQL with ``?`` placeholders; :func:`_pyformat` is the one place that
turns them into psycopg's ``%s``. Reads and writes take different roads:

- reads run on short autocommit queries: SQLite gives each reading thread a connection of
  its own (handed to the next thread when one ends), PostgreSQL a small bounded pool;
- writes go through :meth:`Database.begin`, called only by the group-commit thread, on
  ONE writer connection (``BEGIN IMMEDIATE`` on SQLite: the write lock is taken up front,
  so a transaction that reads then writes can never fail half way on a busy database).

``psycopg`` is imported only when a PostgreSQL URL is opened. A new SQLite file is created
0600 in a 0700 folder; SQLite gives its ``-wal`` and ``-shm`` files the database's mode.
The driver's errors come out as :class:`~engine.errors.StoreError`, saying which store and
what it was doing (the driver's error is its ``__cause__``).

Example:
    >>> db = open_database("sqlite://")
    >>> with db.begin() as conn:
    ...     _ = conn.execute("CREATE TABLE t (x INTEGER)")
    ...     _ = conn.execute("INSERT INTO t VALUES (?)", (7,))
    >>> db.fetch_one("SELECT x FROM t WHERE x = ?", (7,))
    (7,)
    >>> db.close()
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import StoreError
from engine.files import make_dirs

if TYPE_CHECKING:
    import psycopg

BUSY_TIMEOUT_S = 60
# Pragmas of every SQLite connection; WAL is a property of the file, set once by the writer.
_PRAGMAS = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")
_SQLITE_IDLE_KEPT = 16


class Cursor(Protocol):
    """What the store uses of a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection:
    """A driver connection that takes the store's SQL (``?`` placeholders) on either database."""

    __slots__ = ("_raw", "_sql")

    def __init__(self, raw: Any, sql: Callable[[str], str]) -> None:
        self._raw = raw
        self._sql = sql

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        cursor: Cursor = self._raw.execute(self._sql(sql), args)
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if len(rows) == 1:  # psycopg's executemany costs a pipeline sync even for one row
            self._raw.execute(self._sql(sql), rows[0])
        elif rows:
            self._raw.cursor().executemany(self._sql(sql), rows)


def _same(sql: str) -> str:
    return sql


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    # The store's SQL holds no literal `?` or `%`, so this is the whole translation.
    return sql.replace("?", "%s")


class Database(ABC):
    """One database of runs: reads from any thread, transactions from the writer thread."""

    dialect: str
    # Appended to the fence's SELECT: keeps the row from changing until the commit.
    lock_row: str = ""
    # The driver's base error class (what a missing table raises, for example).
    error: type[Exception]

    #: How messages name this database (a file, or a server without its password).
    where: str = "?"

    def __init__(self) -> None:
        self.opened = 0  # connections opened so far (a benchmark figure)

    @contextmanager
    def failing(self, doing: str) -> Iterator[None]:
        """Turn the driver's errors (and OSError) inside the block into StoreError."""
        try:
            yield
        except (self.error, OSError) as exc:
            raise StoreError(self.where, doing, _reason(exc)) from exc

    def fetch_all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query, outside any write transaction."""
        with self.failing("cannot be read"):
            return self._fetch_all(sql, args)

    @abstractmethod
    def _fetch_all(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]: ...

    def fetch_one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or None."""
        rows = self.fetch_all(sql, args)
        return rows[0] if rows else None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction on the writer connection: committed on exit, rolled back on error."""
        with self.failing("cannot write"), self._begin() as conn:
            yield conn

    @abstractmethod
    def _begin(self) -> AbstractContextManager[Connection]: ...

    @abstractmethod
    def tables(self) -> set[str]:
        """The names of the tables the database has."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection; the database is not used after."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_database(url: str) -> Database:
    """The database of ``sqlite:///PATH``, ``sqlite://`` (memory), ``postgresql://…`` or
    ``postgresql+psycopg://…``.

    >>> open_database("mysql://db/runs")
    Traceback (most recent call last):
    ...
    ValueError: unsupported database URL `mysql://…` (sqlite:///PATH or postgresql://…)
    """
    if url in ("sqlite://", "sqlite:///:memory:"):
        return SqliteDatabase(None)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")))
    for scheme in ("postgresql://", "postgresql+psycopg://"):
        if url.startswith(scheme):
            return PostgresDatabase("postgresql://" + url.removeprefix(scheme))
    scheme = url.split("://", 1)[0]
    raise ValueError(f"unsupported database URL `{scheme}://…` (sqlite:///PATH or postgresql://…)")


class _Held:
    """A reading thread's SQLite connection; when the thread ends it is handed back."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class SqliteDatabase(Database):
    """A SQLite file in WAL mode, or a private in-memory database (``path`` None).

    In memory there is one connection, shared under a lock: each connection to
    ``:memory:`` would be a database of its own.
    """

    dialect = "sqlite"
    error = sqlite3.Error

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.RLock()
        self._local = threading.local()
        self._idle: list[sqlite3.Connection] = []
        self._open: set[sqlite3.Connection] = set()
        self._closed = False
        self.where = str(path) if path is not None else "in memory"
        with self.failing("cannot be opened"):
            if path is not None:
                _create_private(path)
            self._writer = self._connect()
            if path is not None:
                self._writer.execute("PRAGMA journal_mode=WAL")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            ":memory:" if self.path is None else self.path,
            timeout=BUSY_TIMEOUT_S,  # busy_timeout: wait for another process's writer
            isolation_level=None,  # autocommit; the writer says BEGIN itself
            check_same_thread=False,  # the writer and handed-back readers change threads
        )
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        with self._lock:
            self.opened += 1
            self._open.add(conn)
        return conn

    def _fetch_all(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        if self.path is None:
            with self._lock:
                return self._writer.execute(sql, args).fetchall()
        return self._reader().execute(sql, args).fetchall()

    def tables(self) -> set[str]:
        rows = self.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(row[0]) for row in rows}

    def _reader(self) -> sqlite3.Connection:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            held = _Held(conn if conn is not None else self._connect())
            weakref.finalize(held, self._hand_back, held.conn)
            self._local.held = held
        return held.conn

    def _hand_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _SQLITE_IDLE_KEPT:
                self._idle.append(conn)
                return
            self._open.discard(conn)
        conn.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        # In memory the lock also keeps readers off the one connection mid-transaction.
        guard: AbstractContextManager[Any] = self._lock if self.path is None else nullcontext()
        with guard:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield Connection(self._writer, _same)
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

    @contextmanager
    def exclusive(self) -> Iterator[sqlite3.Connection]:
        """The in-memory database's one connection, nobody else using it (for migrations)."""
        with self._lock:
            yield self._writer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._open, self._idle = self._open, set(), []
        for conn in conns:
            conn.close()


def _create_private(path: Path) -> None:
    """Create the database file 0600 (and its folder 0700) unless it exists."""
    make_dirs(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3: a bounded pool of reading connections, one writer."""

    dialect = "postgresql"
    lock_row = " FOR NO KEY UPDATE"

    def __init__(self, conninfo: str, readers: int = 8) -> None:
        import psycopg

        super().__init__()
        self.conninfo = conninfo
        self.where = _without_password(conninfo)
        self.error = psycopg.Error
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._slots = threading.BoundedSemaphore(readers)
        self._closed = False
        self._writer: psycopg.Connection[tuple[Any, ...]] | None = None

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._psycopg.connect(self.conninfo, autocommit=True)
        with self._lock:
            self.opened += 1
        return conn

    def tables(self) -> set[str]:
        rows = self.fetch_all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {str(row[0]) for row in rows}

    def _fetch_all(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        query = _pyformat(sql)
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is not None:
                try:
                    return self._fetch(conn, query, args)
                except self._psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    # An idle connection the server dropped (a restart): once more, fresh.
            return self._fetch(self._connect(), query, args)

    def _fetch(
        self, conn: psycopg.Connection[tuple[Any, ...]], query: str, args: Sequence[object]
    ) -> list[tuple[Any, ...]]:
        try:
            return conn.execute(query, args).fetchall()
        finally:
            with self._lock:
                keep = not (self._closed or conn.broken or conn.closed)
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        if self._writer is None or self._writer.broken or self._writer.closed:
            self._writer = self._connect()
        with self._writer.transaction():
            yield Connection(self._writer, _pyformat)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._idle = self._idle, []
        if self._writer is not None:
            conns.append(self._writer)
            self._writer = None
        for conn in conns:
            conn.close()


def _without_password(conninfo: str) -> str:
    """A PostgreSQL URL fit for a message.

    >>> _without_password("postgresql://ss:s3cret@db:5432/runs")
    'postgresql://ss@db:5432/runs'
    """
    scheme, sep, rest = conninfo.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return conninfo
    return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
