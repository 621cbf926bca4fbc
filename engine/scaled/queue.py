"""Run jobs as Procrastinate tasks: ``serve`` defers them, ``slipstream worker`` runs them.

:class:`QueuedJobs` has the interface of :class:`~engine.runs.jobs.JobRunner` (the
embedded mode's in-process threads), so the service facade does not know which it has. A
job names its task and its run; the work itself is rebuilt by the worker from the run's
state in the store (its checkpoint), which is what makes a retried job safe. Every job of a
run carries the run id as its Procrastinate ``lock``: the jobs of one deployment run one at
a time, in order, on whichever worker; different runs go in parallel. A second copy of a
job already waiting (``queueing_lock``) is not queued twice.

Example (not run: it needs PostgreSQL)::

        jobs = QueuedJobs.open("postgresql+psycopg://ss@db/slip")
        jobs.submit("0f3a9c", "drive", lambda: None).result()   # the job's id
        # 17
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate import exceptions as pexc

from engine.errors import Conflict
from engine.runs.jobs import Stopped
from engine.runs.locks import RunLocked
from engine.scaled import runfiles
from engine.store.runstore import RunStore

if TYPE_CHECKING:
    from engine.service import Service

log = logging.getLogger(__name__)

QUEUE = "runs"
_RUN_LOCK_CLASS = 7411004  # first key of the runs' advisory locks
#: The jobs a worker runs; the others (scale, build, reconcile, plan) are left to do.
JOB_NAMES = ("drive", "terminate")
#: Aliases: a resume or an approval drives the run from its checkpoint.
ALIASES = {"resume": "drive", "approve": "drive"}


class Interrupted(RuntimeError):
    """The worker stopped while the job ran: it is queued again (resumes from its checkpoint)."""


def conninfo(url: str) -> str:
    """psycopg's connection string from the service's URL.

    >>> conninfo("postgresql+psycopg://ss@db/slip?options=-csearch_path%3Dprod")
    'postgresql://ss@db/slip?options=-csearch_path%3Dprod'
    """
    scheme, _, rest = url.partition("://")
    if not scheme.startswith("postgres"):
        raise ValueError(f"the scaled mode needs a PostgreSQL URL, not `{scheme}://…`")
    return f"postgresql://{rest}"


def is_scaled(url: str | None) -> bool:
    """Whether the service's database URL selects the scaled mode.

    >>> is_scaled("postgresql+psycopg://db/slip"), is_scaled("sqlite:///x/runs.db"), is_scaled(None)
    (True, False, False)
    """
    return bool(url) and str(url).startswith("postgres")


class _Worker:
    """What the tasks of this process run on (set by :func:`bind` in a worker)."""

    service: Service | None = None


def bind(service: Service) -> None:
    """The worker's service: its tasks drive runs through its run manager."""
    _Worker.service = service


def _service() -> Service:
    if _Worker.service is None:
        raise RuntimeError("no service bound: run tasks in `slipstream worker`")
    return _Worker.service


def make_app(url: str) -> procrastinate.App:
    """The Procrastinate app of the service whose database is ``url``, with its tasks."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(url), min_size=1, max_size=4)
    )
    # A job that finds its run locked by a Terraform command a dead worker left running
    # tries again a little later (the command finishes, or the lock's holder is found dead).
    retry = procrastinate.RetryStrategy(
        max_attempts=60, wait=5, retry_exceptions={RunLocked, Interrupted}
    )

    @app.task(name="slipstream.drive", queue=QUEUE, retry=retry, pass_context=True)
    def drive(context: procrastinate.JobContext, run_id: str) -> str:
        return run_job(context, run_id, "drive", lambda s: s.manager().drive(run_id))

    @app.task(name="slipstream.terminate", queue=QUEUE, retry=retry, pass_context=True)
    def terminate(context: procrastinate.JobContext, run_id: str) -> str:
        return run_job(context, run_id, "terminate", lambda s: s.manager().terminate(run_id))

    return app


def run_job(
    context: procrastinate.JobContext, run_id: str, name: str, work: Callable[[Service], str]
) -> str:
    """Run one job, with an event at its start and end in the run's log (their times show
    that the jobs of one run never overlap, whichever workers took them)."""
    from engine.scaled.logs import current_run

    service = _service()
    job = context.job
    attempt = f" (attempt {job.attempts + 1})" if job.attempts else ""
    worker = context.worker_name or "worker"
    data = {"job": job.id, "task": name, "worker": worker, "attempts": job.attempts}
    with current_run(run_id), run_lock(service.store, run_id):
        log.info("%s job %s started%s on %s", name, job.id, attempt, worker)
        service.store.add_event(run_id, "job", f"{name} job {job.id} started{attempt}", data)
        restored = runfiles.restore(service.store, service.home, run_id)
        if restored:
            log.info("restored %d file(s) of the run from the store", len(restored))
        try:
            state = work(service)
        except BaseException as err:
            data["error"] = repr(err)
            service.store.add_event(run_id, "job", f"{name} job {job.id} stopped: {err}", data)
            raise
        if service.manager().stopping:
            message = f"{name} job {job.id} interrupted (its worker stops): queued again"
            service.store.add_event(run_id, "job", message, data)
            raise Interrupted(message)
        service.store.add_event(run_id, "job", f"{name} job {job.id} done: {state}", data)
        log.info("%s job %s done: %s", name, job.id, state)
        run = service.store.get_run(run_id)
        if run is not None and run.checkpoint == "destroyed":
            runfiles.forget_tokens(service.store, run_id)
        return state


@contextmanager
def run_lock(store: RunStore, run_id: str) -> Iterator[None]:
    """Hold the run's lock in PostgreSQL while a job of it runs, on a connection of its
    own: it goes with the worker's process (a kill -9 closes the connection), and no two
    workers on any hosts drive one run at once, even one taken for dead that was not.
    RunLocked (the job is retried a little later) while another holds it."""
    import psycopg

    conninfo = getattr(store.database, "conninfo", None)
    if conninfo is None:
        yield
        return
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The two-key form: a key space apart from Terraform's pg backend (one bigint key).
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_RUN_LOCK_CLASS, run_id)
        ).fetchone()
        if not (row and row[0]):
            raise RunLocked(f"run `{run_id}` is driven by another worker")
        yield  # closing the connection lets go of the lock


class QueuedJobs:
    """The scaled mode's jobs: deferred to PostgreSQL, run by ``slipstream worker``."""

    def __init__(self, app: procrastinate.App) -> None:
        self.app = app
        self._stopping = False
        self._keep: tuple[RunStore, Path] | None = None

    def keep_files(self, store: RunStore, home: Path) -> None:
        """Save each run's files in ``store`` (from ``home``) before its first job, so a
        worker on another host can drive it (:mod:`engine.scaled.runfiles`)."""
        self._keep = (store, home)

    @classmethod
    def open(cls, url: str) -> QueuedJobs:
        return cls(make_app(url).open())

    def submit(self, run_id: str, name: str, work: Callable[[], Any]) -> Future[Any]:
        """Queue job ``name`` of ``run_id`` (``work`` is the in-process runner's; a worker
        rebuilds it); the future gives the job's id, or None when the same job was already
        waiting."""
        if self._stopping:
            raise Stopped("the service is stopping: no new job starts")
        task = ALIASES.get(name, name)
        if task not in JOB_NAMES:
            raise Conflict(f"`{name}` is not available in the scaled mode yet (no such worker job)")
        if self._keep is not None:
            runfiles.save(*self._keep, run_id)
        future: Future[Any] = Future()
        deferrer = self.app.configure_task(
            f"slipstream.{task}", lock=run_id, queueing_lock=f"{run_id}:{task}", queue=QUEUE
        )
        try:
            future.set_result(deferrer.defer(run_id=run_id))
        except pexc.AlreadyEnqueued:
            future.set_result(None)
        return future

    def _rows(self, run_id: str, status: str) -> list[str]:
        connector = self.app.connector.get_sync_connector()
        rows = connector.execute_query_all(
            query="SELECT task_name FROM procrastinate_jobs"
            " WHERE lock = %(lock)s AND status = %(status)s ORDER BY id",
            lock=run_id,
            status=status,
        )
        return [str(r["task_name"]).removeprefix("slipstream.") for r in rows]

    def running(self) -> dict[str, str]:
        """Run → the name of its job some worker runs now."""
        connector = self.app.connector.get_sync_connector()
        rows = connector.execute_query_all(
            query="SELECT lock, task_name FROM procrastinate_jobs"
            " WHERE status = 'doing' AND queue_name = %(queue)s",
            queue=QUEUE,
        )
        return {str(r["lock"]): str(r["task_name"]).removeprefix("slipstream.") for r in rows}

    def pending(self, run_id: str) -> list[str]:
        return self._rows(run_id, "todo")

    def stop(self, wait_s: float = 30.0) -> list[str]:
        """No new job from here; queued and running ones stay with the workers."""
        self._stopping = True
        self.app.close()
        return []
