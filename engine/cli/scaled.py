"""The scaled mode's commands: ``slipstream db upgrade`` and ``slipstream worker``.

Both need ``SLIPSTREAM_DATABASE_URL=postgresql+psycopg://…`` (and the ``postgres`` extra).

Example:
    $ export SLIPSTREAM_DATABASE_URL=postgresql+psycopg://ss@db.example/slipstream
    $ slipstream db upgrade
    $ slipstream worker --concurrency 4 --agents https://slipstream.example:8780
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated

import typer

from engine.cli.options import service_home

db = typer.Typer(help="The service's database (scaled mode).", no_args_is_help=True)


def _url(command: str) -> str:
    url = os.environ.get("SLIPSTREAM_DATABASE_URL", "")
    if not url.startswith("postgres"):
        typer.echo(
            f"{command}: set SLIPSTREAM_DATABASE_URL=postgresql+psycopg://USER@HOST/DB"
            " (the scaled mode runs on PostgreSQL)",
            err=True,
        )
        raise typer.Exit(2)
    return url


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the run store and install the job queue's schema (before a rolling restart)."""
    from engine.scaled.schema import upgrade

    for line in upgrade(_url("db upgrade")):
        typer.echo(line)


def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="jobs (runs) this worker drives at once")
    ] = 2,
    agents: Annotated[
        str | None,
        typer.Option(
            "--agents",
            help="the serve replica this worker's agents on this host use"
            " (unix:/path or http(s)://host:port; default SLIPSTREAM_AGENTS_URL)",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="the serve address agents on other clouds use"),
    ] = None,
    stall_after: Annotated[
        float, typer.Option("--stall-after", help="seconds without heartbeat: worker dead")
    ] = 30.0,
    ops_port: Annotated[
        int | None, typer.Option("--ops-port", help="serve /healthz and /metrics on this port")
    ] = None,
    json_logs: Annotated[
        bool, typer.Option("--json-logs", help="log JSON lines with the run id")
    ] = False,
) -> None:
    """Run run jobs (deploy, resume, terminate) queued by `slipstream serve`, until stopped."""
    from engine.scaled.logs import setup_logging
    from engine.scaled.worker import Worker, WorkerSettings

    url = _url("worker")
    agents = agents or os.environ.get("SLIPSTREAM_AGENTS_URL", "")
    if not agents:
        typer.echo("worker: say where agents find a serve replica: --agents URL", err=True)
        raise typer.Exit(2)
    setup_logging(json_logs or None)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    settings = WorkerSettings(
        agents=agents,
        public_url=public_url or os.environ.get("SLIPSTREAM_PUBLIC_URL", ""),
        fingerprint=os.environ.get("SLIPSTREAM_SERVER_FINGERPRINT", ""),
        concurrency=concurrency,
        stall_s=stall_after,
        heartbeat_s=min(2.0, stall_after / 4),
        ops_port=ops_port,
    )

    def ready(w: Worker) -> None:
        where = f"; ops at {w.ops.url}" if w.ops is not None else ""
        typer.echo(f"worker {w.name}: {concurrency} at once, agents via {agents}{where}", err=True)

    Worker(service_home(), url, settings).run(stopping, ready)
