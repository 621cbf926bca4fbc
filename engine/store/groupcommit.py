"""Group commit: many threads' small writes committed together in one transaction.

When hundreds of agents vote or publish at once, one transaction each means a convoy on
SQLite's single writer. Callers still block until their own write is committed (stored
before acknowledged); they just share the commit.

Example:
    >>> import tempfile
    >>> from sqlalchemy import create_engine, text
    >>> engine = create_engine(f"sqlite:///{tempfile.mkdtemp()}/db")
    >>> with engine.begin() as conn:
    ...     _ = conn.execute(text("create table t (x int)"))
    >>> writer = GroupWriter(engine.begin)
    >>> writer.submit(lambda conn: conn.execute(text("insert into t values (1)")))
    >>> with engine.connect() as conn:
    ...     conn.execute(text("select count(*) from t")).scalar()
    1
    >>> writer.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

Write = Callable[[Any], object]


class _Pending:
    __slots__ = ("after", "done", "error", "write")

    def __init__(self, write: Write, after: Callable[[], None] | None) -> None:
        self.write = write
        self.after = after
        self.done = threading.Event()
        self.error: BaseException | None = None

    def finish(self) -> None:
        if self.error is None and self.after is not None:
            self.after()
        self.done.set()


class GroupWriter:
    """One background thread commits queued writes in batches; ``submit`` waits for its own."""

    def __init__(self, begin: Callable[[], AbstractContextManager[Any]], max_batch: int = 512):
        self._begin = begin
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, write: Write, after: Callable[[], None] | None = None) -> None:
        """Run ``write(conn)`` in a shared transaction; returns once it is committed.

        ``after`` runs once committed, in commit order, on the writer thread: the place to
        update caches that must agree with the store.
        """
        pending = _Pending(write, after)
        with self._cond:
            if self._closed:
                raise RuntimeError("group writer is closed")
            self._queue.append(pending)
            self._cond.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._begin() as conn:
                for pending in batch:
                    pending.write(conn)
        except BaseException:
            # Retried one by one, so only the culprit fails.
            for pending in batch:
                try:
                    with self._begin() as conn:
                        pending.write(conn)
                except BaseException as exc:
                    pending.error = exc  # handed to the caller
                pending.finish()
            return
        for pending in batch:
            pending.finish()
