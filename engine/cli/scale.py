"""``slipstream scale``: grow or shrink a scalable run in Ready (see :mod:`engine.runs.scaling`).

Example::

    $ slipstream scale 3f2a9c1e0b7d4a55 worker=+2
    run 3f2a9c1e0b7d4a55: Ready
    $ slipstream scale 3f2a9c1e0b7d4a55 --remove worker.3
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from engine.cli.options import JsonOpt, remote_client, user
from engine.cli.output import print_json, report

if TYPE_CHECKING:
    from engine.cli.client import ServiceClient


def scale(
    run_id: Annotated[str, typer.Argument(help="a scalable run in Ready")],
    changes: Annotated[
        list[str] | None, typer.Argument(help="NODE=+N to add, NODE=-N to remove the newest")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="NODE.INDEX of an instance to remove")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Scale a run: new instances run the whole chain, the others `on_vm_add`/`on_vm_remove`."""
    from engine.errors import Conflict, SlipstreamError, UsageError

    if (client := remote_client("scale")) is not None:
        _remote(client, run_id, changes or [], remove or [], as_json)
    from engine.cli.runs import driving_service

    service = driving_service()
    try:
        actor = service.local_actor(user())
        state = service.scale(actor, run_id, changes or [], remove or [])
        doc = service.get_run(actor, run_id)
    except UsageError as err:
        typer.echo(f"{err}", err=True)
        raise typer.Exit(2) from err
    except (Conflict, SlipstreamError) as err:
        typer.echo(f"scale: {err}", err=True)
        raise typer.Exit(1) from err
    finally:
        service.close()
    report(doc, state, as_json)


def _remote(
    client: ServiceClient, run_id: str, changes: list[str], remove: list[str], as_json: bool
) -> NoReturn:
    from engine.cli.client import ApiError

    try:
        doc = client.call("POST", f"/runs/{run_id}/scale", {"changes": changes, "remove": remove})
    except ApiError as err:
        typer.echo(f"scale: {err}", err=True)
        raise typer.Exit(1) from err
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"run {run_id}: {doc['state']} (scale {' '.join(changes + remove)} started)")
    raise typer.Exit(0)
