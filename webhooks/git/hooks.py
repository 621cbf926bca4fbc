"""``POST /hooks/{repository}``: Git hosts' deliveries in, reconciles and plans queued.

A delivery is checked in this order: size (413 over 25 MiB, by ``Content-Length`` and by
the bytes really read), repository (404), signature (401, counted and otherwise
forgotten), meaning (400). Then it is recorded durably under (repository, delivery id), and
only then answered 202 with the work queued behind the answer on the service's job runner;
a delivery id seen before is answered 200 with what the first one recorded (its run ids)
and starts nothing. A push to the tracked branch reconciles; a pull (merge) request opened
or updated is planned and reported back; anything else is recorded and ignored.

The same object polls (``serve --poll 60``: fetch, and reconcile when the head moved) and
swaps runs once the new one is Ready (:meth:`engine.gitops.reconcile.GitOps.settle`).

Example::

        door = GitFrontDoor(service, jobs, poll_s=60)
        app = create_app(home, service.coordinator, service=service, git=door)
        door.start()
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.gitops.plans import plan_commit
from engine.gitops.reconcile import GitOps
from engine.gitops.registry import Repository
from engine.runs.jobs import Jobs
from engine.service import Service
from webhooks.git.hosts import HostError, host_client
from webhooks.git.payloads import Delivery, Forged, Malformed, parse, verify

log = logging.getLogger(__name__)
MAX_BODY = 25 * 1024 * 1024
SETTLE_S = 1.0


def refuse(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


class GitFrontDoor:
    """Webhook route, polling and run swaps of the repositories of one service."""

    def __init__(self, service: Service, jobs: Jobs, poll_s: float = 0.0) -> None:
        self.gitops = GitOps(service, notify=self.report)
        self.registry = self.gitops.registry
        self.jobs = jobs
        self.poll_s = poll_s
        self.refused = 0  # forged or unsigned deliveries: counted, nothing else kept
        self._projects: dict[str, str] = {}  # repository → project a delivery named
        # Deliveries (id, trigger) waiting for the reconcile queued for their repository.
        self._waiting: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._repos: dict[str, tuple[float, Repository | None]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gitops", daemon=True)

    def routes(self) -> list[BaseRoute]:
        return [Route("/hooks/{name}", self.receive, methods=["POST"])]

    # -- deliveries -------------------------------------------------------------------

    async def receive(self, request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > MAX_BODY):
            return refuse(413, f"a delivery is at most {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return refuse(413, f"a delivery is at most {MAX_BODY} bytes")
        name = request.path_params["name"]
        cached = self._repos.get(name)
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            repo = cached[1]
        else:
            repo = await run_in_threadpool(self._repo, name)
        if repo is None:
            return refuse(404, f"no repository `{name}` is registered")
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret = os.environ.get(repo.secret_env, "") if repo.secret_env else ""
        try:
            host = verify(headers, bytes(body), secret)
        except Forged:
            self.refused += 1
            return refuse(401, "the delivery's signature does not match the webhook secret")
        try:
            delivery = parse(host, headers, bytes(body))
        except Malformed as err:
            return refuse(400, str(err))
        # Stored (committed) before the answer, awaited on the loop: no thread is held.
        recorded = self.registry.record_delivery_later(
            repo.name, delivery.delivery_id, delivery.event, delivery.commit
        )
        if not await asyncio.wrap_future(recorded):
            known = await run_in_threadpool(self.registry.delivery, repo.name, delivery.delivery_id)
            assert known is not None
            return JSONResponse({**known.to_json(), "replayed": True}, 200)
        doc, status = self.accept(repo, delivery)
        return JSONResponse(doc, status)

    def _repo(self, name: str) -> Repository | None:
        """The registered repository, remembered for a second (``receive`` reads that
        first): a busy repository's deliveries do not each ask the store."""
        repo = self.registry.get(name)
        self._repos[name] = (time.monotonic(), repo)
        return repo

    def accept(self, repo: Repository, delivery: Delivery) -> tuple[dict[str, Any], int]:
        """Queue the work of a delivery just recorded; its answer."""
        event = delivery.event
        if delivery.project_id or delivery.repository:
            self._projects[repo.name] = delivery.project_id or delivery.repository
        trigger = f"{delivery.host} {event} {delivery.delivery_id}"
        if event == "push" and delivery.branch == repo.branch and delivery.after:
            self.queue_reconcile(repo.name, delivery.delivery_id, trigger)
            status = "queued"
        elif delivery.wants_plan:
            self.jobs.submit(
                f"gitops:{repo.name}:pr{delivery.number}", "plan",
                lambda: self._plan(repo, delivery),
            )  # fmt: skip
            status = "queued"
        else:
            why = "pong" if event == "ping" else f"nothing to do for this {event}"
            self.registry.finish_delivery_later(repo.name, delivery.delivery_id, "ignored", why)
            status = "ignored"
        doc = {"delivery": delivery.delivery_id, "event": event, "commit": delivery.commit}
        return {**doc, "status": status, "runs": [], "replayed": False}, 202

    def queue_reconcile(self, name: str, delivery_id: str, trigger: str) -> None:
        """Queue a reconcile of ``name``, unless one is queued and not started yet: it
        reconciles to the branch head anyway, so it answers this delivery too."""
        with self._lock:
            waiting = self._waiting.setdefault(name, [])
            waiting.append((delivery_id, trigger))
            if len(waiting) > 1:
                return
        self.jobs.submit(f"gitops:{name}", "reconcile", lambda: self._reconcile(name))

    def _reconcile(self, name: str) -> None:
        with self._lock:
            waiting = self._waiting.pop(name, [])
        if not waiting:
            return
        first, trigger = waiting[0]
        # A head already reconciled (a re-sent push) needs nothing: `repo sync` retries.
        outcome = self.gitops.reconcile(name, trigger, only_new=True)
        status = "done" if outcome.ok else "failed"
        self.registry.finish_delivery(name, first, status, outcome.describe(), outcome.started)
        for delivery_id, _ in waiting[1:]:  # its runs are the first one's, named once
            message = f"reconciled with delivery {first}: {outcome.describe()}"
            self.registry.finish_delivery(name, delivery_id, status, message, [])

    def _plan(self, repo: Repository, delivery: Delivery) -> None:
        n = delivery.number
        pull = f"refs/{'merge-requests' if delivery.host == 'gitlab' else 'pull'}/{n}/head"
        refs = (pull, f"refs/heads/{delivery.head_ref}") if delivery.head_ref else (pull,)
        client = host_client(repo, delivery.project_id or delivery.repository)
        sha = delivery.head_sha
        try:
            if client is not None:
                client.status(sha, "pending", "planning")
            report = plan_commit(self.gitops, repo.name, sha, refs)
            if client is not None:
                client.status(sha, "success" if report.ok else "failure", report.describe())
                known = self.registry.comment_id(repo.name, n)
                made = client.comment(n, report.markdown(), known)
                if made != known:
                    self.registry.set_comment_id(repo.name, n, made)
            status, message = ("done" if report.ok else "failed"), report.describe()
        except HostError as err:
            status, message = "failed", f"reporting to {repo.host}: {err}"
        self.registry.finish_delivery(repo.name, delivery.delivery_id, status, message, [])

    def report(self, repo: Repository, commit: str, state: str, description: str) -> None:
        """Tell the host about a commit (GitOps' ``notify``); nothing without a client."""
        client = host_client(repo, self._projects.get(repo.name, ""))
        if client is not None:
            try:
                client.status(commit, state, description)
            except HostError as err:
                log.warning("status of %s for %s: %s", commit[:12], repo.name, err)

    # -- polling and swaps ------------------------------------------------------------

    def start(self) -> GitFrontDoor:
        """Swap and poll from now on; deliveries recorded but never reconciled (the
        service stopped first) are reconciled now."""
        for name, delivery_id in self.registry.queued_pushes():
            self.queue_reconcile(name, delivery_id, f"push {delivery_id} (after a restart)")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()

    def poll(self) -> None:
        """Queue a reconcile of every repository whose branch head moved (deduped by
        commit: a head already reconciled does nothing)."""
        for repo in self.registry.all():
            key = f"gitops:{repo.name}"
            if "poll" in self.jobs.pending(key):
                continue
            self.jobs.submit(key, "poll", self._poller(repo.name))

    def _poller(self, name: str) -> Callable[[], object]:
        return lambda: self.gitops.reconcile(name, "poll", only_new=True)

    def _loop(self) -> None:
        next_poll = time.monotonic() + (self.poll_s or float("inf"))
        while not self._stopping.wait(SETTLE_S):
            try:
                for line in self.gitops.settle():
                    log.info("gitops: %s", line)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    self.poll()
            except Exception:  # the next round tries again
                log.exception("gitops round failed")
