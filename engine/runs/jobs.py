"""JobRunner: the resident service's in-process jobs (drive, terminate, approve …).

A few worker threads; the jobs of one run go one at a time, in the order they were
submitted, while jobs of different runs go in parallel. On stop, no new job starts and the
running ones get a bounded time to finish (each run is checkpointed, so what is cut short
resumes when the service starts again). The scaled mode replaces this with queue workers.

Example:
    >>> runner = JobRunner(workers=2)
    >>> runner.submit("r1", "drive", lambda: "Ready").result()
    'Ready'
    >>> runner.stop()
    []
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Jobs(Protocol):
    """What the service needs of its jobs: this module's threads (embedded and resident),
    or PostgreSQL's queue run by ``slipstream worker`` (:mod:`engine.scaled.queue`)."""

    def submit(self, run_id: str, name: str, work: Callable[[], Any]) -> Future[Any]: ...

    def running(self) -> dict[str, str]: ...

    def pending(self, run_id: str) -> list[str]: ...

    def stop(self, wait_s: float = 30.0) -> list[str]: ...


class Stopped(RuntimeError):
    """The runner is stopping: it takes no new job."""


@dataclass
class _Job:
    run_id: str
    name: str
    work: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


class JobRunner:
    """Runs jobs on ``workers`` threads, one job per run at a time."""

    def __init__(self, workers: int = 4) -> None:
        self._lock = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._busy: dict[str, str] = {}  # run → name of its running job
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"job-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, run_id: str, name: str, work: Callable[[], Any]) -> Future[Any]:
        """Queue ``work`` for ``run_id``; its future gives the result (or the exception)."""
        job = _Job(run_id, name, work)
        with self._lock:
            if self._stopping:
                raise Stopped("the service is stopping: no new job starts")
            self._queue.append(job)
            self._lock.notify_all()
        return job.future

    def running(self) -> dict[str, str]:
        """Run → the name of the job running for it now."""
        with self._lock:
            return dict(self._busy)

    def pending(self, run_id: str) -> list[str]:
        """Names of the jobs of ``run_id`` waiting their turn."""
        with self._lock:
            return [job.name for job in self._queue if job.run_id == run_id]

    def _next(self) -> _Job | None:
        """The first queued job whose run has no running job (called under the lock)."""
        for job in self._queue:
            if job.run_id not in self._busy:
                self._queue.remove(job)
                self._busy[job.run_id] = job.name
                return job
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._next()
                while job is None:
                    if self._stopping:
                        return
                    self._lock.wait()
                    job = self._next()
            try:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_result(job.work())
            except BaseException as err:  # handed to whoever waits on the future
                log.exception("job %s of run %s failed", job.name, job.run_id)
                job.future.set_exception(err)
            finally:
                with self._lock:
                    del self._busy[job.run_id]
                    self._lock.notify_all()

    def stop(self, wait_s: float = 30.0) -> list[str]:
        """Take no new job, drop the queued ones, give the running ones ``wait_s``; returns
        the runs whose jobs were still running (they resume at the next start)."""
        with self._lock:
            self._stopping = True
            for job in self._queue:
                job.future.cancel()
            self._queue.clear()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=wait_s / max(1, len(self._threads)))
        with self._lock:
            return sorted(self._busy)
