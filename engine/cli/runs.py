"""Commands that drive runs: ``deploy``, ``resume``, ``destroy``.

This is where the CLI composes the engine: the service, with the HTTP server agents talk
to (``webhooks``, imported only when a run is first driven). Everything heavy is imported
when a command runs. With ``SLIPSTREAM_URL`` and ``SLIPSTREAM_TOKEN`` the commands ask a
resident service instead (:mod:`engine.cli.remote`), with the same output and exit codes.

Example:
    $ slipstream deploy webapp --input greeting=hi --json
    $ slipstream destroy 3f2a9c1e
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from engine.cli.options import (
    CloudOpt,
    CloudsOpt,
    InputFileOpt,
    InputOpt,
    JsonOpt,
    MultiplicityOpt,
    RootOpt,
    deployment_root,
    overrides,
    remote_client,
    service_home,
    user,
)
from engine.cli.output import (
    PAGE,
    destroyed_report,
    event_line,
    fail,
    print_json,
    printable,
    report,
)

if TYPE_CHECKING:
    from engine.service import Service


def driving_service(clouds: Path | None = None) -> Service:
    """The service of this home, able to start the agents' HTTP server.

    Example: ``driving_service().deploy("alice", "webapp")`` stores a run to drive.
    """
    from engine.service import Service

    home = service_home()

    # The CLI is the composition root: the only engine module that wires in HTTP.
    from webhooks.local_agents import serve_agents

    service = Service(home, serve_agents(home), clouds)
    for repair in service.repairs:
        typer.echo(f"warning: {repair}", err=True)
    return service


class EventTail(threading.Thread):
    """Prints a run's events to stderr while it is driven.

    Example: ``tail = EventTail(service, run_id); tail.start()``; then ``tail.done.set()``
    and a last ``tail.flush()`` once the run is over.
    """

    def __init__(self, service: Service, run_id: str, after: int = 0) -> None:
        super().__init__(daemon=True)
        self.service, self.run_id, self.after = service, run_id, after
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.flush()

    def flush(self) -> None:
        """Print every event not printed yet, page after page."""
        while True:
            page = self.service.store.events(self.run_id, self.after, PAGE)
            for event in page:
                self.after = event.id
                typer.echo(event_line(event), err=True)
            if len(page) < PAGE:
                return


def deploy(
    deployment: Annotated[str, typer.Argument(help="deployment file, or its name")],
    inputs: InputOpt = None,
    input_files: InputFileOpt = None,
    cloud: CloudOpt = None,
    multiplicity: MultiplicityOpt = None,
    clouds: CloudsOpt = None,
    root: RootOpt = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="as a client of a service: return when the run is Ready or over, not at "
            "once (the embedded mode always waits)",
        ),
    ] = False,
    as_json: JsonOpt = False,
    scalable: Annotated[
        bool, typer.Option("--scalable", help="the run accepts `slipstream scale` in Ready")
    ] = False,
) -> None:
    """Deploy: provision every cloud, run the coordination phase, stop at Ready (or Done)."""
    import dataclasses

    from engine.errors import CloudError, RecipeInvalid

    client = remote_client("deploy")
    parsed = overrides(inputs, cloud, multiplicity, input_files)
    if scalable:
        parsed = dataclasses.replace(parsed, scalable=True)
    if client is not None:
        from engine.cli import remote

        if clouds is not None:
            typer.echo("usage: --clouds is the service's setting, not its clients'", err=True)
            raise typer.Exit(2)
        if scalable:
            typer.echo("usage: put `scalable: true` in the deployment to deploy it", err=True)
            raise typer.Exit(2)
        remote.deploy(client, deployment, parsed, root, wait, as_json)
    service = driving_service(clouds)
    try:
        base, walk = deployment_root(deployment, root)
        run_id = service.deploy(service.local_actor(user()), deployment, parsed, base, walk=walk)
    except RecipeInvalid as err:
        service.close()
        fail(err.problems, as_json, "deploy")
    except CloudError as err:
        service.close()
        typer.echo(f"deploy: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"run {run_id}: deploying `{deployment}`", err=True)
    after = 0
    for event in service.store.events(run_id):  # its creation, and where each recipe is from
        after = event.id
        if event.kind == "recipe":
            typer.echo(f"  {printable(event.message)}", err=True)
    drive_and_report(service, run_id, as_json, after)


def drive_and_report(service: Service, run_id: str, as_json: bool, after: int = 0) -> None:
    """Drive a run to Ready or its end, printing its events after the id ``after``; exit 0
    only for Ready or Done.

    Example: ``drive_and_report(driving_service(), run_id, as_json=False)`` shows a live
    table on a terminal (event lines otherwise), then ``run RUN: Ready`` and its URL.
    """
    from engine.errors import SlipstreamError

    live = None
    if sys.stderr.isatty() and not as_json:
        from engine.cli.progress import LiveProgress

        live = LiveProgress(service.store, run_id)
    tail = EventTail(service, run_id, after)
    if live is not None:
        live.start()
    elif not as_json:
        tail.start()
    try:
        state = service.drive(run_id)
    except SlipstreamError as err:
        typer.echo(f"run {run_id}: {err}", err=True)
        raise typer.Exit(1) from err
    finally:
        tail.done.set()
        if live is not None:
            live.finish()
        elif not as_json:
            tail.flush()
        service.close()
    report(service.get_run(service.local_actor(user()), run_id), state, as_json)


def resume(
    run_id: Annotated[str, typer.Argument(help="a run whose deploying process was killed")],
    as_json: JsonOpt = False,
) -> None:
    """Resume driving a run from its last checkpoint (no resource is created twice)."""
    if (client := remote_client("resume")) is not None:
        from engine.cli import remote

        remote.resume(client, run_id, as_json)
    service = driving_service()
    if service.store.get_run(run_id) is None:
        service.close()
        typer.echo(f"resume: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    # What happened before is in `slipstream logs`: print only what happens from now on.
    last, _ = service.store.last_events(run_id, 1)
    drive_and_report(service, run_id, as_json, after=last[-1].id if last else 0)


def destroy(
    run_id: Annotated[str, typer.Argument(help="the run to terminate")],
    wait: Annotated[bool, typer.Option("--wait", help="return when resources are gone")] = True,
    from_state: Annotated[
        bool,
        typer.Option(
            "--from-state",
            help="destroy from the run's Terraform roots alone, without the run store "
            "(when it is damaged)",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Terminate a run: Ready → Finalizing → Done, or cancel a run still on its way."""
    from engine.errors import SlipstreamError

    if from_state:
        destroy_from_state(run_id, as_json)
    if (client := remote_client("destroy")) is not None:
        from engine.cli import remote

        remote.destroy(client, run_id, as_json)
    service = driving_service()
    if service.store.get_run(run_id) is None:
        typer.echo(f"destroy: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    try:
        state = service.terminate(service.local_actor(user()), run_id)
    except SlipstreamError as err:
        typer.echo(f"destroy: {err}", err=True)
        raise typer.Exit(1) from err
    finally:
        service.close()
    run = service.store.get_run(run_id)
    destroyed_report(run_id, state, run is not None and run.checkpoint == "destroyed", as_json)


def destroy_from_state(run_id: str, as_json: bool) -> NoReturn:
    """``destroy --from-state``: every root of the run's folder destroyed, the store unused.

    Example: ``slipstream destroy --from-state 3f2a9c1e`` prints ``local: destroyed 4
    resource(s)`` and exits 0 once every root is empty.
    """
    from engine.errors import SlipstreamError
    from engine.files import private_home
    from engine.runs.teardown import destroy_from_state as destroy_roots
    from engine.terraform.binary import find_terraform

    home = service_home()
    for repair in private_home(home):
        typer.echo(f"warning: {repair}", err=True)
    lines: list[str] = []
    try:
        for line in destroy_roots(home, run_id, find_terraform(home)):
            lines.append(line)
            if not as_json:
                typer.echo(printable(line))
    except SlipstreamError as err:
        if as_json:
            print_json({"id": run_id, "destroyed": False, "steps": lines, "error": str(err)})
        typer.echo(f"destroy: {printable(str(err))}", err=True)
        raise typer.Exit(1) from err
    if as_json:
        print_json({"id": run_id, "destroyed": True, "steps": lines})
    else:
        typer.echo(f"run {run_id}: destroyed from its Terraform state (the run store untouched)")
    raise typer.Exit(0)
