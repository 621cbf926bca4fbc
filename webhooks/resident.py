"""The resident service: ``slipstream serve``'s server, jobs and run take-over, wired.

One process: the HTTP server (agent API, REST API, Slack's endpoint when
``SLACK_SIGNING_SECRET`` and ``SLACK_BOT_TOKEN`` are set, and later Git webhooks) on a TCP
port (HTTPS when it faces other machines) and on a Unix socket for agents on this host; a
job runner that drives runs; a sweep that takes over every live run nobody else drives
(after a restart, or when an embedded ``slipstream deploy`` has exited), so runs outlive
any client and their agents always find a server; and with Slack, the watcher that posts
runs' progress there.

Example (not run: it serves until stopped)::

        server = ResidentService(Path(".slipstream"), ServeSettings.load(Path(".slipstream")))
        server.start()
        ...
        server.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from chatops.settings import SlackSettings
from engine.runs.endpoints import Endpoints
from engine.runs.jobs import JobRunner, Jobs
from engine.service import Service
from webhooks.app import create_app
from webhooks.server import HttpServer, Tls
from webhooks.tls import ensure_certificate, fingerprint

if TYPE_CHECKING:
    from chatops.app import SlackFrontDoor
    from webhooks.git.hooks import GitFrontDoor

log = logging.getLogger(__name__)

SWEEP_S = 5.0
DEFAULT_PORT = 8780
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """How ``slipstream serve`` listens: flags win over ``SLIPSTREAM_*`` variables, which win
    over ``serve.yaml`` in the service home. Secrets never come from ``serve.yaml``.

    ``tls``: ``auto`` (HTTPS unless the host is loopback), ``on`` or ``off``.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str = ""
    tls: str = "auto"
    cert: Path | None = None
    key: Path | None = None
    workers: int = 4
    stop_grace_s: float = 30.0
    # Where chat front doors look recipes up by name (None: the service home's parent).
    recipe_root: Path | None = None
    # Seconds between fetches of every registered repository (0: webhooks only).
    poll: float = 0.0

    @classmethod
    def load(cls, home: Path, **flags: Any) -> ServeSettings:
        """Settings from ``home/serve.yaml``, the environment, then ``flags`` (None: unset).

        >>> ServeSettings.load(Path("/nonexistent"), port=9000).port
        9000
        """
        found: dict[str, Any] = {}
        path = home / "serve.yaml"
        if path.exists():
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: expected a mapping of settings")
            unknown = set(doc) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
            found.update(doc)
        for name in cls.__dataclass_fields__:
            value = os.environ.get(f"SLIPSTREAM_SERVE_{name.upper()}")
            if value:
                found[name] = value
        if os.environ.get("SLIPSTREAM_PUBLIC_URL"):
            found["public_url"] = os.environ["SLIPSTREAM_PUBLIC_URL"]
        found.update({k: v for k, v in flags.items() if v is not None})
        settings = cls(
            host=str(found.get("host", cls.host)),
            port=int(found.get("port", cls.port)),
            public_url=str(found.get("public_url", "")),
            tls=str(found.get("tls", "auto")),
            cert=Path(found["cert"]) if found.get("cert") else None,
            key=Path(found["key"]) if found.get("key") else None,
            workers=int(found.get("workers", cls.workers)),
            stop_grace_s=float(found.get("stop_grace_s", cls.stop_grace_s)),
            recipe_root=Path(found["recipe_root"]) if found.get("recipe_root") else None,
            poll=float(found.get("poll", 0.0)),
        )
        if settings.tls not in ("auto", "on", "off"):
            raise ValueError(f"tls must be auto, on or off, not `{settings.tls}`")
        if bool(settings.cert) != bool(settings.key):
            raise ValueError("a certificate needs its key (cert and key go together)")
        return settings

    @property
    def uses_tls(self) -> bool:
        if self.tls == "auto":
            return self.host not in LOOPBACK or self.public_url.startswith("https:")
        return self.tls == "on"


class ResidentService:
    """``slipstream serve``: the service, its HTTP server, its jobs and its take-over sweep."""

    def __init__(self, home: Path, settings: ServeSettings) -> None:
        self.home = home
        self.settings = settings
        # Scaled mode (a PostgreSQL URL): jobs go to the queue `slipstream worker`s run.
        url = os.environ.get("SLIPSTREAM_DATABASE_URL", "")
        self.scaled = url.startswith("postgres")
        self.jobs: Jobs
        queued = None
        if self.scaled:
            from engine.scaled.queue import QueuedJobs

            self.jobs = queued = QueuedJobs.open(url)
        else:
            self.jobs = JobRunner(settings.workers)
        self.service = Service(home, self._endpoints, jobs=self.jobs)
        if queued is not None:  # workers on other hosts get each run's files from the store
            queued.keep_files(self.service.store, home)
        self.replicas: Any = None
        self.server: HttpServer | None = None
        self.slack: SlackFrontDoor | None = None
        self.git: GitFrontDoor | None = None
        self.git_jobs: Jobs = self.jobs
        self.endpoints = Endpoints("", "")
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="take-over", daemon=True)

    def _endpoints(self, coordinator: Any) -> tuple[Endpoints, Any]:
        return self.endpoints, lambda: None  # the server runs already; stop() ends it

    def start(self) -> ResidentService:
        """Listen, then take over the live runs; returns once agents can be served."""
        settings = self.settings
        tls: Tls | None = None
        if settings.uses_tls:
            if settings.cert is not None and settings.key is not None:
                tls = Tls(settings.cert, settings.key)
            else:
                hosts = [settings.host, "localhost", "127.0.0.1"]
                if settings.public_url:
                    hosts.insert(0, urlsplit(settings.public_url).hostname or settings.host)
                tls = ensure_certificate(
                    self.home, [h for h in hosts if h not in ("0.0.0.0", "::")]
                )
        coordinator = self.service.coordinator
        if self.scaled:
            from engine.coordination.replicas import Replicas

            # Writes through other replicas and workers wake this one's long-polls.
            self.replicas = Replicas(self.service.store, coordinator).start()
        slack = SlackSettings.from_env()
        if slack is not None:
            from chatops.app import SlackFrontDoor

            root = settings.recipe_root or self.home.resolve().parent
            self.slack = SlackFrontDoor(self.service, slack, lambda: [root], self.home)
        wsgi = self.slack.wsgi if self.slack is not None else None
        from webhooks.git.hooks import GitFrontDoor

        # Reconciling is no worker task: scaled, it runs here and the runs it starts are
        # queued for the workers like any other.
        self.git_jobs = JobRunner(settings.workers) if self.scaled else self.jobs
        self.git = GitFrontDoor(self.service, self.git_jobs, settings.poll)
        app = create_app(self.home, coordinator, service=self.service, slack=wsgi, git=self.git)
        self.server = HttpServer(
            app,
            unix=self.home.resolve() / "sockets" / f"{os.getpid()}.sock",
            tcp=(settings.host, settings.port),
            tls=tls,
            on_loop=coordinator.hub.attach,
        ).start()
        remote = settings.public_url or self.server.tcp_url
        self.endpoints = Endpoints(
            self.server.unix_url, remote.rstrip("/"), fingerprint(tls.cert) if tls else ""
        )
        self.service.manager()  # built now: its endpoints are the running server's
        if not self.scaled:  # scaled, workers take runs over (stalled jobs are retried)
            taken = self.service.take_over()
            if taken:
                log.info("took over %d run(s): %s", len(taken), ", ".join(taken))
            self._sweeper.start()
        if self.slack is not None:
            self.slack.start()
        self.git.start()
        return self

    @property
    def url(self) -> str:
        """Where clients (the CLI, people) reach the service."""
        assert self.server is not None
        return self.server.tcp_url

    @property
    def slack_status(self) -> str:
        """Where Slack reaches the service, or why it does not.

        Example: ``Slack at https://ops.example:8780/slack/events``, or ``Slack off (set
        SLACK_BOT_TOKEN)``.
        """
        if self.slack is None:
            return f"Slack off (set {' and '.join(SlackSettings.missing())})"
        return f"Slack at {(self.settings.public_url or self.url).rstrip('/')}/slack/events"

    def _sweep(self) -> None:
        while not self._stopping.wait(SWEEP_S):
            try:
                self.service.take_over()
            except Exception:  # the next sweep tries again
                log.exception("take-over sweep failed")

    def stop(self) -> list[str]:
        """No new job; running ones stop at their next checkpoint (Terraform is interrupted
        cleanly and its state kept); then the server closes. Returns the runs left to
        resume at the next start."""
        self._stopping.set()
        if self.git is not None:
            self.git.stop()
        if self.slack is not None:
            self.slack.stop()
        manager = self.service.manager()
        manager.stop()
        unfinished = self.jobs.stop(self.settings.stop_grace_s)
        if self.git_jobs is not self.jobs:
            self.git_jobs.stop(self.settings.stop_grace_s)
        self.service.coordinator.hub.close()
        if self.server is not None:
            self.server.stop()
        if self.replicas is not None:
            self.replicas.stop()
        with contextlib.suppress(Exception):
            self.service.store.close()
        return unfinished
