"""Group commit: many threads' small writes committed together in one transaction.

When hundreds of agents vote or publish at once, one transaction each means a convoy on
the database's single writer. Every write is queued to one background thread, which
commits whatever has gathered as one transaction; each write gets a
:class:`~concurrent.futures.Future` that resolves once it is committed (stored before
acknowledged). Callers that must not block a thread (an asyncio server) keep the future;
the others wait on it.

A write that raises breaks the shared transaction: the batch is rolled back and retried one
write per transaction, so only the culprit's future fails. A write that raises
:class:`Refused` promises it wrote nothing, so the batch goes on without it.

Example:
    >>> import sqlite3
    >>> from contextlib import contextmanager
    >>> db = sqlite3.connect(":memory:", check_same_thread=False)
    >>> _ = db.execute("create table t (x int)")
    >>> @contextmanager
    ... def begin():
    ...     with db:  # commits, or rolls back on an error
    ...         yield db
    >>> writer = GroupWriter(begin)
    >>> writer.submit(lambda conn: conn.execute("insert into t values (1)").rowcount)
    1
    >>> future = writer.submit_nowait(
    ...     lambda conn: conn.execute("insert into t values (2)").lastrowid,
    ...     after=lambda row: print("committed row", row),
    ... )
    >>> future.result()
    committed row 2
    2
    >>> writer.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class Refused(Exception):
    """Raised by a write that has changed nothing: only its own future fails."""


class _Pending(Generic[C]):
    __slots__ = ("after", "future", "write")

    def __init__(
        self, write: Callable[[C], Any], after: Callable[[Any], object] | None, future: Future[Any]
    ) -> None:
        self.write = write
        self.after = after
        self.future = future


class GroupWriter(Generic[C]):
    """One background thread commits queued writes in batches, each with its own future.

    ``begin()`` gives a context manager: a transaction on connection ``C``, committed on a
    clean exit and rolled back when the block raises.
    """

    def __init__(self, begin: Callable[[], AbstractContextManager[C]], max_batch: int = 512):
        self._begin = begin
        self._max_batch = max_batch
        self._queue: list[_Pending[C]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
        self._thread.start()

    def submit_nowait(
        self, write: Callable[[C], T], after: Callable[[T], object] | None = None
    ) -> Future[T]:
        """Queue ``write(conn)``; its future gets what it returns once committed.

        ``after(result)`` runs on the writer thread once the write is committed, in commit
        order, before the future resolves: the place to update caches that must agree with
        the store. Should ``after`` raise, the write stays committed and the future gets
        its error. Cancelling the future before its batch starts skips the write.
        """
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("group writer is closed")
            self._queue.append(_Pending(write, after, future))
            self._cond.notify()
        return future

    def submit(self, write: Callable[[C], T], after: Callable[[T], object] | None = None) -> T:
        """:meth:`submit_nowait`, then wait: returns ``write``'s result once committed."""
        return self.wait(lambda: self.submit_nowait(write, after))

    def wait(self, queue: Callable[[], Future[T]]) -> T:
        """Queue a write with ``queue()`` and wait for its result; on the writer thread
        itself (in an ``after``) that would never end, so it raises before queueing."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write waited for on the writer thread would never commit")
        return queue().result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread; later submits raise RuntimeError."""
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
            batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Pending[C]]) -> None:
        done: list[tuple[_Pending[C], Any, Refused | None]] = []
        try:
            with self._begin() as conn:
                for pending in batch:
                    try:
                        done.append((pending, pending.write(conn), None))
                    except Refused as exc:
                        done.append((pending, None, exc))
        except BaseException:
            # Retried one by one, so only the culprit fails.
            for pending in batch:
                self._commit_alone(pending)
            return
        for pending, result, refused in done:
            if refused is None:
                self._finish(pending, result)
            else:
                pending.future.set_exception(refused)

    def _commit_alone(self, pending: _Pending[C]) -> None:
        try:
            with self._begin() as conn:
                result = pending.write(conn)
        except BaseException as exc:
            pending.future.set_exception(exc)  # handed to the caller
            return
        self._finish(pending, result)

    @staticmethod
    def _finish(pending: _Pending[C], result: Any) -> None:
        if pending.after is not None:
            try:
                pending.after(result)
            except BaseException as exc:
                pending.future.set_exception(exc)
                return
        pending.future.set_result(result)
