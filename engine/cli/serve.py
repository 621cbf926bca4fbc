"""``slipstream serve``: the resident service (DESIGN sections 8 and 9).

It serves agents (on a Unix socket for this host's, over HTTPS for other machines), the REST
API, Slack's endpoint (``/slack/events``, when ``SLACK_SIGNING_SECRET`` and
``SLACK_BOT_TOKEN`` are set), and drives runs as jobs, so runs outlive any client. SIGTERM
(or Ctrl-C) stops it gracefully: no new job, running Terraform interrupted cleanly with its
state kept, and whatever was on its way resumes at the next start.

Example:
    $ slipstream serve --host 0.0.0.0 --port 8780 --public-url https://slipstream.example:8780
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.options import service_home


def serve(
    host: Annotated[str | None, typer.Option("--host", help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default 8780)")] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="the address agents on other clouds use"),
    ] = None,
    tls: Annotated[
        str | None, typer.Option("--tls", help="auto (HTTPS unless loopback), on or off")
    ] = None,
    cert: Annotated[Path | None, typer.Option("--cert", help="TLS certificate (PEM)")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="its private key (PEM)")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="runs driven at once (default 4)")
    ] = None,
    json_logs: Annotated[
        bool,
        typer.Option("--json-logs", help="log JSON lines with the run id (SLIPSTREAM_LOG_JSON)"),
    ] = False,
    poll: Annotated[
        float | None,
        typer.Option("--poll", help="fetch registered repositories every N seconds"),
    ] = None,
) -> None:
    """Run the resident service: agents, the REST API and run jobs, until stopped."""
    from webhooks.resident import ResidentService, ServeSettings

    home = service_home()
    if json_logs or os.environ.get("SLIPSTREAM_LOG_JSON", "") not in ("", "0", "false"):
        from engine.scaled.logs import setup_logging

        setup_logging(True)
    try:
        settings = ServeSettings.load(
            home,
            host=host,
            port=port,
            public_url=public_url,
            tls=tls,
            cert=cert,
            key=key,
            workers=workers,
            poll=poll,
        )
    except ValueError as err:
        typer.echo(f"serve: {err}", err=True)
        raise typer.Exit(2) from err
    stopping = threading.Event()
    # Installed before anything starts, so a stop during start-up is not lost.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        resident = ResidentService(home, settings).start()
    except OSError as err:
        typer.echo(f"serve: cannot listen on {settings.host}:{settings.port}: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(
        f"serving {resident.url} (agents elsewhere: {resident.endpoints.remote};"
        f" {resident.slack_status})",
        err=True,
    )
    if resident.endpoints.fingerprint:
        typer.echo(f"certificate {resident.endpoints.fingerprint}", err=True)
    stopping.wait()
    typer.echo("stopping: no new job; running ones stop at their next checkpoint", err=True)
    left = resident.stop()
    if left:
        typer.echo(f"to resume at the next start: {', '.join(left)}", err=True)
