"""The ``slipstream`` command line: the one composition root of the engine.

Results go to stdout (``--json`` for a machine-readable document), progress and errors
to stderr. Exit codes: 0 success, 1 failure (for example an invalid recipe), 2 usage error.

Example:
    $ slipstream validate templates/
    $ slipstream compile webapp --cloud web=aws-eu --clouds clouds.yaml --out build/
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.canonical import dumps
from engine.cli.progress import LiveProgress
from engine.compile.compiler import compile_text
from engine.coordination.coordinator import Coordinator
from engine.errors import CloudError, Problem, RecipeInvalid, SlipstreamError
from engine.files import write_atomic
from engine.recipes.clouds import CloudsConfig, load_home_clouds
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from engine.recipes.schema import recipe_schema
from engine.runs.manager import Endpoints
from engine.service import Service
from engine.store.runstore import Event

app = typer.Typer(
    name="slipstream",
    help="Coordinated multi-cloud deployments from YAML recipes, on Terraform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

NOT_RECIPES = {"clouds.yaml", "clouds.yml", "slipstream.yaml", "slipstream.yml"}

JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON document on stdout")]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="recipe root where components are found (default: the Git "
        "checkout holding the recipe, else its folder)",
    ),
]
CloudsOpt = Annotated[
    Path | None,
    typer.Option(
        "--clouds", help="clouds configuration (default: clouds.yaml in the service home)"
    ),
]


InputOpt = Annotated[list[str] | None, typer.Option("--input", help="KEY=VALUE")]
CloudOpt = Annotated[list[str] | None, typer.Option("--cloud", help="NODE=CLOUD[,CLOUD…]")]
MultiplicityOpt = Annotated[list[str] | None, typer.Option("--multiplicity", help="NODE=N")]


def _overrides(
    inputs: list[str] | None, cloud: list[str] | None, multiplicity: list[str] | None
) -> Overrides:
    """Parsed deploy-time overrides; a malformed one is a usage error (exit 2)."""
    try:
        parsed = Overrides.parse(inputs or [], cloud or [], multiplicity or [])
    except RecipeInvalid as err:
        for problem in err.problems:
            typer.echo(f"usage: {problem}", err=True)
        raise typer.Exit(2) from err
    for warning in parsed.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return parsed


def _deployment_root(deployment: str) -> Path:
    """The recipe root for a deployment given as a file, or by name (then: from here)."""
    return recipe_root(Path(deployment) if Path(deployment).exists() else Path.cwd())


def event_line(event: Event) -> str:
    """One event as a terminal line: time, kind, message."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{stamp} {event.kind:<9} {event.message}"


def service_home() -> Path:
    """The service home: ``$SLIPSTREAM_HOME`` or ``./.slipstream``."""
    return Path(os.environ.get("SLIPSTREAM_HOME", ".slipstream"))


def _clouds(path: Path | None) -> CloudsConfig:
    return load_home_clouds(service_home(), path)


def recipe_root(start: Path) -> Path:
    """The Git checkout (or folder with ``slipstream.yaml``) holding ``start``, else its folder."""
    here = start.resolve()
    folder = here if here.is_dir() else here.parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists() or (candidate / "slipstream.yaml").exists():
            return candidate
    return folder


def _fail(problems: list[Problem], as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(dumps({"ok": False, "problems": [p.to_json() for p in problems]}), nl=False)
    else:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{what}: {len(problems)} problem(s)", err=True)
    raise typer.Exit(1)


def _recipe_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files.extend(
                    Path(dirpath) / f
                    for f in sorted(filenames)
                    if f.endswith((".yaml", ".yml")) and f not in NOT_RECIPES
                )
        else:
            files.append(path)
    return files


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="recipe files or folders of recipes")],
    root: RootOpt = None,
    clouds: CloudsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check recipes (components and deployments); print every problem with file:line:column."""
    try:
        config = _clouds(clouds)
    except RecipeInvalid as err:
        _fail(err.problems, as_json, "clouds configuration")
    files = _recipe_files(paths)
    loaders: dict[Path, RecipeLoader] = {}
    problems: list[Problem] = []
    for file in files:
        base = root or recipe_root(file)
        loader = loaders.setdefault(base, RecipeLoader(base, config))
        loader.validate_file(file, str(file))
    for loader in loaders.values():
        problems.extend(loader.problems)
    problems = sorted(set(problems))
    if problems:
        _fail(problems, as_json, "validate")
    if as_json:
        typer.echo(dumps({"ok": True, "files": [str(f) for f in files]}), nl=False)
    else:
        typer.echo(f"ok: {len(files)} recipe file(s) valid")


@app.command("compile")
def compile_cmd(
    deployment: Annotated[str, typer.Argument(help="deployment file, or its name")],
    inputs: InputOpt = None,
    cloud: CloudOpt = None,
    multiplicity: MultiplicityOpt = None,
    clouds: CloudsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out"),
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile a deployment to one Terraform JSON root per cloud: OUT/<cloud>/main.tf.json."""
    overrides = _overrides(inputs, cloud, multiplicity)
    try:
        config = _clouds(clouds)
        base = root or _deployment_root(deployment)
        dep = RecipeLoader(base, config).deployment(deployment, overrides, require_values=True)
        texts = compile_text(dep, config)
    except RecipeInvalid as err:
        _fail(err.problems, as_json, "compile")
        return
    except CloudError as err:
        typer.echo(f"compile: {err}", err=True)
        raise typer.Exit(1) from err
    written: dict[str, str] = {}
    for name, text in texts.items():
        target = out / name / "main.tf.json"
        write_atomic(target, text)
        written[name] = str(target)
    if as_json:
        doc: dict[str, Any] = {
            "ok": True,
            "deployment": dep.name,
            "roots": written,
            "instances": dep.instance_count(),
        }
        typer.echo(dumps(doc), nl=False)
    else:
        for name, path in written.items():
            typer.echo(f"{name}: {path}")


def _service(clouds: Path | None = None) -> Service:
    home = service_home()

    def serve(coordinator: Coordinator) -> tuple[Endpoints, Callable[[], None]]:
        # The CLI is the composition root: the only engine module that wires in HTTP.
        from webhooks.app import create_app
        from webhooks.server import HttpServer

        server = HttpServer(
            create_app(home, coordinator),
            unix=home.resolve() / "sockets" / f"{os.getpid()}.sock",
            tcp=("127.0.0.1", 0),
            on_loop=coordinator.hub.attach,
        ).start()

        def stop() -> None:
            coordinator.hub.close()  # long-polls answer now rather than being cut
            server.stop()

        return Endpoints(server.unix_url, server.tcp_url), stop

    return Service(home, serve, clouds)


def _user() -> str:
    return os.environ.get("SLIPSTREAM_USER") or getpass.getuser()


class _Tail(threading.Thread):
    """Prints a run's events to stderr while it is driven."""

    def __init__(self, service: Service, run_id: str) -> None:
        super().__init__(daemon=True)
        self.service, self.run_id, self.after = service, run_id, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.flush()

    def flush(self) -> None:
        for event in self.service.store.events(self.run_id, self.after):
            self.after = event.id
            typer.echo(event_line(event), err=True)


@app.command()
def deploy(
    deployment: Annotated[str, typer.Argument(help="deployment file, or its name")],
    inputs: InputOpt = None,
    cloud: CloudOpt = None,
    multiplicity: MultiplicityOpt = None,
    clouds: CloudsOpt = None,
    root: RootOpt = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="return when the run is Ready or over (the embedded service always waits)",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Deploy: provision every cloud, run the coordination phase, stop at Ready (or Done)."""
    overrides = _overrides(inputs, cloud, multiplicity)
    service = _service(clouds)
    try:
        base = root or _deployment_root(deployment)
        run_id = service.deploy(_user(), deployment, overrides, base)
    except RecipeInvalid as err:
        service.close()
        _fail(err.problems, as_json, "deploy")
        return
    except CloudError as err:
        service.close()
        typer.echo(f"deploy: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"run {run_id}: deploying `{deployment}`", err=True)
    _drive_and_report(service, run_id, as_json)


def _drive_and_report(service: Service, run_id: str, as_json: bool) -> None:
    """Drive a run to Ready or its end, printing events; exit 0 only for Ready or Done."""
    live = LiveProgress(service.store, run_id) if sys.stderr.isatty() and not as_json else None
    tail = _Tail(service, run_id)
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
    doc = service.get_run(_user(), run_id)
    if as_json:
        typer.echo(dumps(doc), nl=False)
    else:
        typer.echo(f"run {run_id}: {state}" + (f" — {doc['abort']}" if doc["abort"] else ""))
        if doc.get("url"):
            typer.echo(f"url: {doc['url']}")
    raise typer.Exit(0 if state in ("Ready", "Done") else 1)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="a run whose deploying process was killed")],
    as_json: JsonOpt = False,
) -> None:
    """Resume driving a run from its last checkpoint (no resource is created twice)."""
    service = _service()
    if service.store.get_run(run_id) is None:
        service.close()
        typer.echo(f"resume: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    _drive_and_report(service, run_id, as_json)


@app.command()
def destroy(
    run_id: Annotated[str, typer.Argument(help="the run to terminate")],
    wait: Annotated[bool, typer.Option("--wait", help="return when resources are gone")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Terminate a run: Ready → Finalizing → Done, or cancel a run still on its way."""
    service = _service()
    if service.store.get_run(run_id) is None:
        typer.echo(f"destroy: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    try:
        state = service.terminate(_user(), run_id)
    except SlipstreamError as err:
        typer.echo(f"destroy: {err}", err=True)
        raise typer.Exit(1) from err
    finally:
        service.close()
    run = service.store.get_run(run_id)
    destroyed = run is not None and run.checkpoint == "destroyed"
    if as_json:
        typer.echo(dumps({"id": run_id, "state": state, "destroyed": destroyed}), nl=False)
    else:
        typer.echo(f"run {run_id}: {state}" + ("" if destroyed else " (destroy failed: see logs)"))
    raise typer.Exit(0 if destroyed else 1)


def _reader(run_id: str, command: str) -> Service:
    """A service for reading one run (no server, no Terraform); exit 1 when it is unknown."""
    service = Service(service_home(), None)
    if service.store.get_run(run_id) is None:
        typer.echo(f"{command}: unknown run `{run_id}`", err=True)
        raise typer.Exit(1)
    return service


@app.command()
def status(run_id: str, as_json: JsonOpt = False) -> None:
    """A run's state, abort message and main link."""
    service = _reader(run_id, "status")
    doc = service.get_run(_user(), run_id)
    doc.pop("events")
    if as_json:
        typer.echo(dumps(doc), nl=False)
        return
    typer.echo(f"{doc['id']}  {doc['deployment']}  {doc['state']}  {doc.get('url') or ''}")
    if doc["abort"]:
        typer.echo(f"abort: {doc['abort']}")
    for key, value in doc["params"].items():
        if key.endswith(":statecustom"):
            typer.echo(f"  {key.split(':')[0]}: {value}")


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """Runs of this service home, newest first."""
    runs = Service(service_home(), None).list_runs(_user())
    if as_json:
        typer.echo(
            dumps(
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
            ),
            nl=False,
        )
        return
    for r in runs:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        typer.echo(f"{r.id}  {stamp}  {r.deployment:<16} {r.state}")


@app.command()
def params(run_id: str, as_json: JsonOpt = False) -> None:
    """Every runtime parameter of a run (sensitive values masked)."""
    service = _reader(run_id, "params")
    values = service.params(_user(), run_id)
    if as_json:
        typer.echo(dumps(values), nl=False)
        return
    for key, value in values.items():
        typer.echo(f"{key} = {value}")


@app.command()
def logs(
    run_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A run's event log."""
    service = _reader(run_id, "logs")
    after = 0
    while True:
        for event in service.events(_user(), run_id, after):
            after = event.id
            if as_json:
                typer.echo(json.dumps(event.to_json(), sort_keys=True))
            else:
                typer.echo(event_line(event))
        run = service.store.get_run(run_id)
        if not follow or (run and run.state in ("Done", "Aborted", "Cancelled")):
            return
        time.sleep(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema (draft-07) of recipe files, for editors."""
    typer.echo(dumps(recipe_schema()), nl=False)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``slipstream`` console script."""
    # A CI cancel or a service manager stops us with SIGTERM: handle it like Ctrl-C, so
    # running Terraform commands are cancelled instead of orphaned.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
