"""Hub: wakes the requests waiting for a runtime parameter as soon as it is set.

Long-polls register interest in ``(run, key)`` and block on an event; a set wakes only the
waiters of that key, an abort wakes every waiter of the run. The hub also knows who is
waiting for what, which is what a timeout message names.

Example:
    >>> hub = Hub()
    >>> with hub.waiting("r1", "db.1:url", who="web.1") as woken:
    ...     hub.notify("r1", "db.1:url")
    ...     woken.wait(0)
    True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Hub:
    """In-process wake-ups for parameter waits, barriers and state changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], set[threading.Event]] = {}
        self._by_run: dict[str, set[threading.Event]] = {}
        self._who: dict[threading.Event, tuple[str, str, str]] = {}

    @contextmanager
    def waiting(self, run_id: str, key: str, who: str = "") -> Iterator[threading.Event]:
        """Register before checking the store, so no set between check and wait is missed."""
        woken = threading.Event()
        with self._lock:
            self._by_key.setdefault((run_id, key), set()).add(woken)
            self._by_run.setdefault(run_id, set()).add(woken)
            self._who[woken] = (run_id, who, key)
        try:
            yield woken
        finally:
            with self._lock:
                keyed = self._by_key.get((run_id, key))
                if keyed is not None:
                    keyed.discard(woken)
                    if not keyed:
                        del self._by_key[(run_id, key)]
                of_run = self._by_run.get(run_id)
                if of_run is not None:
                    of_run.discard(woken)
                    if not of_run:
                        del self._by_run[run_id]
                self._who.pop(woken, None)

    def notify(self, run_id: str, *keys: str) -> None:
        """Wake the waiters of these keys."""
        with self._lock:
            targets = [e for k in keys for e in self._by_key.get((run_id, k), ())]
        for woken in targets:
            woken.set()

    def notify_run(self, run_id: str) -> None:
        """Wake every waiter of a run (abort, state change)."""
        with self._lock:
            targets = list(self._by_run.get(run_id, ()))
        for woken in targets:
            woken.set()

    def waits_of(self, run_id: str) -> dict[str, list[str]]:
        """Instance → keys it is blocked on right now."""
        with self._lock:
            found: dict[str, list[str]] = {}
            for run, who, key in self._who.values():
                if run == run_id and who:
                    found.setdefault(who, []).append(key)
        return {k: sorted(v) for k, v in sorted(found.items())}
