"""Following a run without blocking the kernel: a background thread polls the backend and
hands each new picture to a callback (widgets may be updated from a thread).

Example (not run as a doctest: it needs a run)::

    follower = RunFollower(backend, run_id, view.show, view.fail)
    follower.start()
    follower.wait(timeout=300)  # optional: block until the run settles
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from notebooks.backend import Backend, BackendError

#: States where a run stops moving by itself (a held run waits for an approval).
SETTLED = ("Ready", "Done", "Aborted", "Cancelled")
INTERVAL_S = 0.5
#: Calls in a row that may fail (a service restarting) before following gives up.
FAILURES = 20

Update = Callable[[dict[str, Any], list[dict[str, Any]]], None]


def settled(doc: dict[str, Any]) -> bool:
    """Whether a run document shows a run at rest.

    >>> settled({"state": "Ready", "busy": False}), settled({"state": "Ready", "busy": True})
    (True, False)
    """
    at_rest = doc.get("state") in SETTLED or doc.get("approval") == "pending"
    return bool(at_rest and not doc.get("busy"))


class RunFollower(threading.Thread):
    """Polls one run until it settles (``until`` says when, else :func:`settled`) or
    :meth:`stop`, calling ``on_update(doc, events)``
    with every event so far, and ``on_error(text)`` when the service cannot be asked."""

    def __init__(
        self,
        backend: Backend,
        run_id: str,
        on_update: Update,
        on_error: Callable[[str], None],
        interval: float = INTERVAL_S,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"follow-{run_id}")
        self.backend, self.run_id = backend, run_id
        self.on_update, self.on_error = on_update, on_error
        self.interval = interval
        self.until = until or settled
        self.events: list[dict[str, Any]] = []
        self.doc: dict[str, Any] = {}
        self._stop_asked = threading.Event()
        self.settled = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self._stop_asked.is_set():
            try:
                after = self.events[-1]["id"] if self.events else 0
                fresh = self.backend.events(self.run_id, after)
                self.doc = self.backend.run(self.run_id)
                self.events.extend(fresh)
                failures = 0
            except BackendError as err:
                failures += 1
                self.on_error(f"following run {self.run_id}: {err}")
                if failures >= FAILURES:
                    break
                self._stop_asked.wait(min(5.0, self.interval * 2**failures))
                continue
            try:
                self.on_update(self.doc, self.events)
            except Exception as err:  # a rendering bug must not end the following silently
                self.on_error(f"showing run {self.run_id}: {err!r}")
            if self.until(self.doc):
                break
            self._stop_asked.wait(self.interval)
        self.settled.set()

    def stop(self) -> None:
        self._stop_asked.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run settles; its last document (for scripts and tests)."""
        if not self.settled.wait(timeout):
            raise TimeoutError(f"run {self.run_id} did not settle in {timeout} s")
        return self.doc
