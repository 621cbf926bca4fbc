"""Hub: wakes whoever waits for a runtime parameter, a vote or a state, as soon as it is set.

Two kinds of waiters share it. Agent requests wait on the server's event loop: all the
waiters of one key await one shared future, so waking 499 of them costs one callback and
one payload (the answer body, serialised once by whoever notifies), not 499 of each. The
engine's own threads (the run driver) wait on a ``threading.Event``. ``notify`` may be
called from any thread; it hands the wake-up to the loop with one thread-safe call.

The hub also knows who is waiting for what, which is what a timeout message names.

Example:
    >>> hub = Hub()
    >>> with hub.waiting("r1", "db.1:url", who="web.1") as woken:
    ...     hub.notify("r1", "db.1:url")
    ...     woken.wait(0)
    True
    >>> import asyncio
    >>> async def main():
    ...     hub.attach(asyncio.get_running_loop())
    ...     waiter = asyncio.ensure_future(hub.wait("r1", "db.1:url", 5, who="web.2"))
    ...     await asyncio.sleep(0)
    ...     hub.notify("r1", "db.1:url", payload=b'{"value": "pg://db"}')
    ...     return await waiter
    >>> asyncio.run(main())
    b'{"value": "pg://db"}'
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

#: What :meth:`Hub.wait` returns when its time ran out.
TIMED_OUT = object()
#: What :meth:`Hub.wait` returns when the whole run was woken (abort, state change).
RUN_WOKEN = object()


class Hub:
    """In-process wake-ups for parameter waits, barriers and state changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], set[threading.Event]] = {}
        self._by_run: dict[str, set[threading.Event]] = {}
        self._who: Counter[tuple[str, str, str]] = Counter()
        self._ids = itertools.count()
        # Owned by the loop's thread: one shared future per awaited key.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: dict[tuple[str, str], asyncio.Future[object]] = {}
        self._keys_of_run: dict[str, set[str]] = {}
        self._closing = False
        # Wake-ups from other threads waiting for the loop to take them (under _lock).
        self._queued: list[tuple[Callable[..., None], tuple[object, ...]]] = []
        self._flush_due = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop async waiters run on (the server's)."""
        self._loop = loop

    # -- threads ----------------------------------------------------------------------

    @contextmanager
    def waiting(self, run_id: str, key: str, who: str = "") -> Iterator[threading.Event]:
        """Register before checking the store, so no set between check and wait is missed."""
        woken = threading.Event()
        with self._lock:
            self._by_key.setdefault((run_id, key), set()).add(woken)
            self._by_run.setdefault(run_id, set()).add(woken)
            self._who[(run_id, who, key)] += 1
        try:
            yield woken
        finally:
            with self._lock:
                _discard(self._by_key, (run_id, key), woken)
                _discard(self._by_run, run_id, woken)
                self._forget(run_id, who, key)

    # -- the event loop ---------------------------------------------------------------

    async def wait(self, run_id: str, key: str, timeout: float, who: str = "") -> object:
        """The payload of the next notify of ``key`` (None if it carried none),
        :data:`RUN_WOKEN` when the whole run was woken, :data:`TIMED_OUT` after ``timeout``.

        A value checked in the same step of the loop as this call is not missed: wake-ups
        from other threads reach the loop as callbacks, which run only once this waiter
        is registered (the writer updates the cache before it notifies).
        """
        if self._closing:
            return TIMED_OUT
        shared = self._futures.get((run_id, key))
        if shared is None or shared.done():
            shared = asyncio.get_running_loop().create_future()
            self._futures[(run_id, key)] = shared
            self._keys_of_run.setdefault(run_id, set()).add(key)
        with self._lock:
            self._who[(run_id, who, key)] += 1
        try:
            return await asyncio.wait_for(asyncio.shield(shared), timeout)
        except TimeoutError:
            return TIMED_OUT
        finally:
            with self._lock:
                self._forget(run_id, who, key)

    def _wake(self, run_id: str, keys: tuple[str, ...], payload: object) -> None:
        for key in keys:
            shared = self._futures.pop((run_id, key), None)
            if shared is not None and not shared.done():
                shared.set_result(payload)
        of_run = self._keys_of_run.get(run_id)
        if of_run is not None:
            of_run.difference_update(keys)
            if not of_run:
                del self._keys_of_run[run_id]

    def _wake_run(self, run_id: str) -> None:
        self._wake(run_id, tuple(self._keys_of_run.get(run_id, ())), RUN_WOKEN)

    def _in_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback(*args)
            return
        # From another thread (the store's writer, committing a batch of writes): the
        # wake-ups queue up and reach the loop with one thread-safe call (one write to the
        # loop's wake-up pipe) for all that came before the loop took them, in order.
        with self._lock:
            self._queued.append((callback, args))
            if self._flush_due:
                return
            self._flush_due = True
        try:
            loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop closed meanwhile
            with self._lock:
                self._queued.clear()
                self._flush_due = False

    def _flush(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, []
            self._flush_due = False
        for callback, args in queued:
            callback(*args)

    # -- both -------------------------------------------------------------------------

    def notify(self, run_id: str, *keys: str, payload: object = None) -> None:
        """Wake the waiters of these keys; async waiters receive ``payload``."""
        with self._lock:
            targets = [e for k in keys for e in self._by_key.get((run_id, k), ())]
        for woken in targets:
            woken.set()
        self._in_loop(self._wake, run_id, keys, payload)

    def notify_run(self, run_id: str) -> None:
        """Wake every waiter of a run (abort, state change)."""
        with self._lock:
            targets = list(self._by_run.get(run_id, ()))
        for woken in targets:
            woken.set()
        self._in_loop(self._wake_run, run_id)

    def close(self) -> None:
        """The server is stopping: every async wait ends now as if its time ran out (so
        long-polls answer instead of being cut), and new ones end at once."""
        self._closing = True
        self._in_loop(self._end_all)

    def _end_all(self) -> None:
        for shared in self._futures.values():
            if not shared.done():
                shared.set_result(TIMED_OUT)
        self._futures.clear()
        self._keys_of_run.clear()

    def waits_of(self, run_id: str) -> dict[str, list[str]]:
        """Instance → keys it is blocked on right now."""
        with self._lock:
            found: dict[str, set[str]] = {}
            for run, who, key in self._who:
                if run == run_id and who:
                    found.setdefault(who, set()).add(key)
        return {k: sorted(v) for k, v in sorted(found.items())}

    def _forget(self, run_id: str, who: str, key: str) -> None:
        entry = (run_id, who, key)
        self._who[entry] -= 1
        if self._who[entry] <= 0:
            del self._who[entry]


K = TypeVar("K")


def _discard(index: dict[K, set[threading.Event]], key: K, woken: threading.Event) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(woken)
        if not found:
            del index[key]
