"""Commands that read runs: ``status``, ``list``, ``params``, ``logs``.

They never start a server or Terraform, and never create a service home: where there is
none yet there are no runs. The service (and its store) is imported when a command runs.
With ``SLIPSTREAM_URL`` and ``SLIPSTREAM_TOKEN`` they ask a resident service instead
(:mod:`engine.cli.remote`) and print the same.

Example:
    $ slipstream list
    $ slipstream logs 3f2a9c1e --follow
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import JsonOpt, remote_client, service_home, user
from engine.cli.output import PAGE, show_event, show_params, show_runs, show_status

if TYPE_CHECKING:
    from engine.service import Service

OVER = ("Done", "Aborted", "Cancelled")


def reading_service() -> Service | None:
    """The service of this home for reading (no server, no Terraform), or None when the
    home does not exist yet: then it has no runs, and opening it would create a database.

    Example: ``reading_service()`` in a folder where nothing was deployed is None.
    """
    home = service_home()
    # A database URL names a store that lives elsewhere: the home folder says nothing of it.
    if not os.environ.get("SLIPSTREAM_DATABASE_URL") and not home.exists():
        return None
    from engine.service import Service

    service = Service(home, None)
    for repair in service.repairs:
        typer.echo(f"warning: {repair}", err=True)
    return service


def run_reader(run_id: str, command: str) -> Service:
    """A service for reading one run; exit 1 when the run is unknown.

    Example: ``run_reader("nope", "status")`` prints ``status: unknown run `nope``` on
    stderr and exits 1.
    """
    service = reading_service()
    if service is None or service.store.get_run(run_id) is None:
        typer.echo(f"{command}: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    return service


def status(run_id: str, as_json: JsonOpt = False) -> None:
    """A run's state, abort message and main link."""
    if (client := remote_client("status")) is not None:
        from engine.cli import remote

        return remote.status(client, run_id, as_json)
    service = run_reader(run_id, "status")
    doc = service.get_run(service.local_actor(user()), run_id)
    doc.pop("events")
    doc.pop("earlier_events")
    show_status(doc, as_json)


def list_cmd(as_json: JsonOpt = False) -> None:
    """Runs of this service home, newest first."""
    if (client := remote_client("list")) is not None:
        from engine.cli import remote

        return remote.list_cmd(client, as_json)
    service = reading_service()
    runs = service.list_runs(service.local_actor(user())) if service is not None else []
    show_runs(
        [
            {
                "id": r.id,
                "deployment": r.deployment,
                "state": r.state,
                "user": r.user,
                "created_at": r.created_at,
            }
            for r in runs
        ],
        as_json,
    )


def params(run_id: str, as_json: JsonOpt = False) -> None:
    """Every runtime parameter of a run (sensitive values masked)."""
    if (client := remote_client("params")) is not None:
        from engine.cli import remote

        return remote.params(client, run_id, as_json)
    service = run_reader(run_id, "params")
    show_params(service.params(service.local_actor(user()), run_id), as_json)


def logs(
    run_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A run's event log."""
    if (client := remote_client("logs")) is not None:
        from engine.cli import remote

        return remote.logs(client, run_id, follow, as_json)
    service = run_reader(run_id, "logs")
    after = 0
    while True:
        page = service.events(service.local_actor(user()), run_id, after, PAGE)
        for event in page:
            after = event.id
            show_event(event, as_json)
        if len(page) == PAGE:
            continue
        run = service.store.get_run(run_id)
        if not follow or (run and run.state in OVER):
            return
        time.sleep(1)
