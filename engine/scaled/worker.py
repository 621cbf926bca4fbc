"""``slipstream worker``: runs the run jobs queued in PostgreSQL (the scaled mode).

Each worker process drives runs through its own :class:`~engine.service.Service` (the same
run manager as the embedded mode: checkpoints in the store, idempotent applies), listens
for coordination writes (:mod:`engine.coordination.replicas`) so its barriers move when
agents vote on any ``serve`` replica, and points the agents of the runs it starts at a
``serve`` replica (``--agents``). Procrastinate's workers send a heartbeat; each worker
also sweeps for jobs whose worker stopped heartbeating (killed, its host gone) and queues
them again, so another worker takes the run on from its last checkpoint.

Example (not run: it works until stopped)::

        worker = Worker(Path(".slipstream"), url, agents="unix:/srv/ss/sockets/1.sock")
        worker.run(threading.Event())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import procrastinate

from engine.coordination.coordinator import Coordinator
from engine.coordination.replicas import Replicas
from engine.metrics import METRICS
from engine.runs.endpoints import Endpoints
from engine.scaled.ops import OpsServer
from engine.scaled.queue import QUEUE, bind, make_app
from engine.service import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker runs: ``agents`` is the address its runs' agents use on this host
    (``unix:/…`` or ``http://…`` of a ``serve`` replica), ``public_url`` the one agents on
    other clouds use (with ``fingerprint``, the replica's certificate's)."""

    agents: str
    public_url: str = ""
    fingerprint: str = ""
    concurrency: int = 2
    # A worker whose heartbeat is older than this is taken for dead: its jobs are retried.
    stall_s: float = 30.0
    heartbeat_s: float = 2.0
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None  # None: no /healthz, /metrics
    name: str = ""


class Worker:
    """One ``slipstream worker`` process."""

    def __init__(self, home: Path, url: str, settings: WorkerSettings) -> None:
        self.home = home
        self.url = url
        self.settings = settings
        self.name = settings.name or f"{socket.gethostname()}-{os.getpid()}"
        self.service = Service(home, self._serve_agents)
        self.replicas: Replicas | None = None
        self.ops: OpsServer | None = None

    def _serve_agents(self, coordinator: Coordinator) -> tuple[Endpoints, Callable[[], None]]:
        s = self.settings
        return Endpoints(s.agents, (s.public_url or s.agents).rstrip("/"), s.fingerprint), (
            lambda: None
        )

    def run(self, stopping: threading.Event, ready: Callable[[Worker], None] | None = None) -> None:
        """Work until ``stopping`` is set; then no new job, running ones stop at their next
        checkpoint and are queued again for another worker."""
        self.replicas = Replicas(self.service.store, self.service.coordinator).start()
        bind(self.service)
        if self.settings.ops_port is not None:
            self.ops = OpsServer(self.service.store, self.settings.ops_host, self.settings.ops_port)
            self.ops.start()
        try:
            asyncio.run(self._main(make_app(self.url), stopping, ready))
        finally:
            if self.ops is not None:
                self.ops.stop()
            self.replicas.stop()
            self.service.store.close()

    async def _main(
        self,
        app: procrastinate.App,
        stopping: threading.Event,
        ready: Callable[[Worker], None] | None,
    ) -> None:
        s = self.settings
        async with app.open_async():
            work = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=s.concurrency,
                    name=self.name,
                    wait=True,
                    install_signal_handlers=False,
                    update_heartbeat_interval=s.heartbeat_s,
                    stalled_worker_timeout=s.stall_s,
                    shutdown_graceful_timeout=60.0,
                    delete_jobs="never",
                )
            )
            sweep = asyncio.create_task(self._sweep(app))
            if ready is not None:
                ready(self)
            await asyncio.get_running_loop().run_in_executor(None, stopping.wait)
            log.info("worker %s stopping: running jobs stop at their next checkpoint", self.name)
            self.service.manager().stop()
            sweep.cancel()
            work.cancel()
            for task in (sweep, work):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _sweep(self, app: procrastinate.App) -> None:
        """Queue again the jobs of workers that stopped heartbeating."""
        manager = app.job_manager
        while True:
            await asyncio.sleep(max(1.0, self.settings.stall_s / 3))
            try:
                stalled = await manager.get_stalled_jobs(
                    queue=QUEUE, seconds_since_heartbeat=self.settings.stall_s
                )
                for job in stalled:
                    await manager.retry_job(job)
                    METRICS.count("slipstream_jobs_retried_total")
                    run_id = job.lock or ""
                    message = (
                        f"job {job.id} ({job.task_name}) lost its worker (no heartbeat for"
                        f" {self.settings.stall_s:g}s): queued again for another worker"
                    )
                    log.warning("%s", message, extra={"run_id": run_id})
                    if run_id:
                        self.service.store.add_event(run_id, "job", message, {"job": job.id})
                await manager.prune_stalled_workers(self.settings.stall_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: the next sweep retries
                log.exception("sweeping for stalled jobs")
