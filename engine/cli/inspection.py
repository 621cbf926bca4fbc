"""Commands that read runs: ``status``, ``list``, ``params``, ``logs``.

They never start a server or Terraform, and never create a service home: where there is
none yet there are no runs. The service (and its store) is imported when a command runs.

Example:
    $ slipstream list
    $ slipstream logs 3f2a9c1e --follow
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import JsonOpt, service_home, user
from engine.cli.output import PAGE, event_line, print_json, printable

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
    service = run_reader(run_id, "status")
    doc = service.get_run(service.local_actor(user()), run_id)
    doc.pop("events")
    doc.pop("earlier_events")
    if as_json:
        print_json(doc)
        return
    url = printable(doc.get("url") or "")
    typer.echo(f"{doc['id']}  {doc['deployment']}  {doc['state']}  {url}")
    if doc["abort"]:
        typer.echo(f"abort: {printable(doc['abort'])}")
    for key, value in doc["params"].items():
        if key.endswith(":statecustom"):
            typer.echo(f"  {key.split(':')[0]}: {printable(value)}")


def list_cmd(as_json: JsonOpt = False) -> None:
    """Runs of this service home, newest first."""
    service = reading_service()
    runs = service.list_runs(service.local_actor(user())) if service is not None else []
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "deployment": r.deployment,
                    "state": r.state,
                    "user": r.user,
                    "created_at": r.created_at,
                }
                for r in runs
            ]
        )
        return
    for r in runs:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        typer.echo(f"{r.id}  {stamp}  {r.deployment:<16} {r.state}")


def params(run_id: str, as_json: JsonOpt = False) -> None:
    """Every runtime parameter of a run (sensitive values masked)."""
    service = run_reader(run_id, "params")
    values = service.params(service.local_actor(user()), run_id)
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        typer.echo(f"{key} = {printable(value)}")


def logs(
    run_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A run's event log."""
    service = run_reader(run_id, "logs")
    after = 0
    while True:
        page = service.events(service.local_actor(user()), run_id, after, PAGE)
        for event in page:
            after = event.id
            if as_json:
                typer.echo(json.dumps(event.to_json(), sort_keys=True))
            else:
                typer.echo(event_line(event))
        if len(page) == PAGE:
            continue
        run = service.store.get_run(run_id)
        if not follow or (run and run.state in OVER):
            return
        time.sleep(1)
