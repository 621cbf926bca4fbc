"""The run commands as clients of a resident service (``SLIPSTREAM_URL``, ``SLIPSTREAM_TOKEN``).

Same output and exit codes as the embedded mode: the documents come from the REST API
instead of the store, and are printed by the same functions. ``deploy`` sends the recipe
files it finds under the recipe root (a bundle) and returns once the run is created, or
with ``--wait`` follows its events to Ready or its end; ``resume`` and ``destroy`` follow
theirs (the service does the work: the command may be interrupted without harm).

Example:
    $ export SLIPSTREAM_URL=https://slipstream.example:8780 SLIPSTREAM_TOKEN=ss_…
    $ slipstream deploy webapp --wait --json
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from engine.cli.client import ApiError, ServiceClient
from engine.cli.options import deployment_root
from engine.cli.output import (
    destroyed_report,
    event_line,
    fail,
    print_json,
    report,
    show_event,
    show_params,
    show_runs,
    show_status,
)
from engine.errors import Mark, Problem

if TYPE_CHECKING:
    from engine.recipes.overrides import Overrides
    from engine.store.runstore import Event

#: What the REST run document has beyond the embedded one (left out of what is printed).
REST_ONLY = ("events_before", "checkpoint")
EVENT_PAGE = 1000
#: How many files the walk of a recipe root looks at before giving up.
MAX_WALKED = 20_000
RECIPE_KIND = re.compile(r"^kind:\s*[\"']?(component|deployment)\b", re.MULTILINE)


def refused(command: str, err: ApiError) -> NoReturn:
    """Report a refused call as ``command: reason`` on stderr and exit 1."""
    typer.echo(f"{command}: {err}", err=True)
    raise typer.Exit(1)


def run_doc(client: ServiceClient, run_id: str, events: bool = True) -> dict[str, Any]:
    """A run's document as the embedded service makes it (every event, or none)."""
    doc: dict[str, Any] = client.call("GET", f"/runs/{run_id}", query={"events": 0})
    for key in REST_ONLY:
        doc.pop(key, None)
    if not events:
        doc.pop("events", None)
        return doc
    doc["events"] = []
    while True:
        after = doc["events"][-1]["id"] if doc["events"] else 0
        page = client.call(
            "GET", f"/runs/{run_id}/events", query={"after": after, "limit": EVENT_PAGE}
        )["events"]
        doc["events"].extend(page)
        if len(page) < EVENT_PAGE:
            return doc


def to_event(run_id: str, doc: dict[str, Any]) -> Event:
    from engine.store.runstore import Event

    return Event(doc["id"], run_id, doc["at"], doc["kind"], doc["message"], doc["data"])


# -- reading --------------------------------------------------------------------------


def status(client: ServiceClient, run_id: str, as_json: bool) -> None:
    try:
        show_status(run_doc(client, run_id, events=False), as_json)
    except ApiError as err:
        refused("status", err)


def list_cmd(client: ServiceClient, as_json: bool) -> None:
    try:
        runs = client.call("GET", "/runs", query={"limit": 100})["runs"]
    except ApiError as err:
        refused("list", err)
    keys = ("id", "deployment", "state", "user", "created_at")
    show_runs([{k: r[k] for k in keys} for r in runs], as_json)


def params(client: ServiceClient, run_id: str, as_json: bool) -> None:
    try:
        show_params(client.call("GET", f"/runs/{run_id}/params")["params"], as_json)
    except ApiError as err:
        refused("params", err)


def logs(client: ServiceClient, run_id: str, follow: bool, as_json: bool) -> None:
    try:
        if follow:
            for message in client.stream(f"/runs/{run_id}/events/stream"):
                if message.event == "message":
                    show_event(to_event(run_id, json.loads(message.data)), as_json)
            return
        for event in run_doc(client, run_id)["events"]:
            show_event(to_event(run_id, event), as_json)
    except ApiError as err:
        refused("logs", err)


# -- driving --------------------------------------------------------------------------


def follow(client: ServiceClient, run_id: str, echo: bool) -> None:
    """Wait until the run stops moving (Ready, over, or held), printing its events on
    stderr when ``echo``."""
    for message in client.stream(f"/runs/{run_id}/events/stream", {"until": "settled"}):
        if echo and message.event == "message":
            typer.echo(event_line(to_event(run_id, json.loads(message.data))), err=True)


def follow_and_report(client: ServiceClient, run_id: str, as_json: bool) -> NoReturn:
    """As the embedded ``drive_and_report``: events on stderr, then where the run ended."""
    try:
        follow(client, run_id, echo=not as_json)
        doc = run_doc(client, run_id)
    except ApiError as err:
        typer.echo(f"run {run_id}: {err}", err=True)
        raise typer.Exit(1) from err
    report(doc, doc["state"], as_json)


def deploy(
    client: ServiceClient,
    deployment: str,
    overrides: Overrides,
    root: Path | None,
    wait: bool,
    as_json: bool,
) -> NoReturn:
    base, walk = deployment_root(deployment, root)
    files, ref = bundle(deployment, base, walk)
    body = {
        "deployment": ref,
        "files": files,
        "inputs": dict(overrides.inputs),
        "clouds": {node: list(names) for node, names in overrides.clouds.items()},
        "multiplicity": dict(overrides.multiplicity),
    }
    try:
        run_id = client.call("POST", "/runs", body)["id"]
    except ApiError as err:
        problems = err.details.get("problems") if err.status == 422 else None
        if problems:
            fail([as_problem(p) for p in problems], as_json, "deploy")
        refused("deploy", err)
    typer.echo(f"run {run_id}: deploying `{deployment}`", err=True)
    if wait:
        follow_and_report(client, run_id, as_json)
    try:
        doc = run_doc(client, run_id)
    except ApiError as err:
        refused("deploy", err)
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"run {run_id}: {doc['state']} (follow it: slipstream logs {run_id} -f)")
    raise typer.Exit(0)


def resume(client: ServiceClient, run_id: str, as_json: bool) -> NoReturn:
    try:
        client.call("POST", f"/runs/{run_id}/resume")
    except ApiError as err:
        refused("resume", err)
    follow_and_report(client, run_id, as_json)


def destroy(client: ServiceClient, run_id: str, as_json: bool) -> NoReturn:
    try:
        client.call("POST", f"/runs/{run_id}/terminate")
        follow(client, run_id, echo=False)
        doc = client.call("GET", f"/runs/{run_id}", query={"events": 0})
    except ApiError as err:
        refused("destroy", err)
    destroyed_report(run_id, doc["state"], doc["checkpoint"] == "destroyed", as_json)


# -- the bundle -----------------------------------------------------------------------


def as_problem(doc: dict[str, Any]) -> Problem:
    return Problem(Mark(doc["file"], doc["line"], doc["column"]), doc["message"])


def bundle(deployment: str, root: Path, walk: bool = True) -> tuple[dict[str, str], str]:
    """(relative path → text of every recipe file under ``root``, the deployment as the
    service should find it): what the loader would search, found the same way (hidden
    folders skipped; below ``root`` only with ``walk``, as for a checkout), and only files
    that declare a recipe ``kind``, within the service's limits. A deployment file outside
    ``root`` is sent too, under its own name.

    Example:
        >>> import tempfile
        >>> top = Path(tempfile.mkdtemp())
        >>> _ = (top / "app.yaml").write_text("kind: deployment\\nname: app\\n")
        >>> _ = (top / "ci.yml").write_text("stages: [test]\\n")
        >>> bundle("app", top)
        ({'app.yaml': 'kind: deployment\\nname: app\\n'}, 'app')
    """
    from engine.recipes.finder import SKIP_DIRS, SUFFIXES
    from engine.service import MAX_BUNDLE_BYTES, MAX_BUNDLE_FILE_BYTES, MAX_BUNDLE_FILES

    root = root.resolve()
    files: dict[str, str] = {}
    ref = deployment
    named = Path(deployment)
    if named.is_file():
        path = named.resolve()
        ref = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        files[ref] = _read(path, MAX_BUNDLE_FILE_BYTES) or ""
    walked = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if walk and not d.startswith(".") and d not in SKIP_DIRS
        )
        for filename in sorted(filenames):
            walked += 1
            if walked > MAX_WALKED:
                _too_big(root, f"more than {MAX_WALKED} files")
            path = Path(dirpath) / filename
            name = PurePosixPath(path.relative_to(root).as_posix())
            if path.suffix not in SUFFIXES or filename.startswith(".") or str(name) in files:
                continue
            text = _read(path, MAX_BUNDLE_FILE_BYTES)
            if text is not None and RECIPE_KIND.search(text):
                files[str(name)] = text
    if len(files) > MAX_BUNDLE_FILES:
        _too_big(root, f"more than {MAX_BUNDLE_FILES} recipe files")
    if sum(len(t.encode("utf-8")) for t in files.values()) > MAX_BUNDLE_BYTES:
        _too_big(root, f"more than {MAX_BUNDLE_BYTES // 2**20} MiB of recipes")
    return files, ref


def _read(path: Path, limit: int) -> str | None:
    """The text of a recipe file; None when it is too big or not UTF-8 (the loader would
    refuse it; the service then finds the recipe elsewhere or says it is missing)."""
    try:
        if path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _too_big(root: Path, what: str) -> NoReturn:
    typer.echo(
        f"deploy: the recipe root {root} holds {what}: name a smaller one with --root", err=True
    )
    raise typer.Exit(2)
