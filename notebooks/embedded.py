"""The embedded backend: the service of a home, in the kernel's own process.

Runs are driven by background threads of this process (the kernel stays free); the HTTP
server the agents talk to starts with the first run, as for the embedded CLI. The home is
``$SLIPSTREAM_HOME``, else ``.slipstream`` in the current folder.

Example (not run as a doctest: it deploys)::

    backend = EmbeddedBackend.open()
    run_id = backend.deploy(DeployRequest("cluster", multiplicity={"worker": 1}))
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import SlipstreamError
from engine.recipes.overrides import Overrides
from engine.service import Service
from engine.store.runstore import RunFilter, RunRecord
from notebooks.backend import BackendError, DeployRequest, RunQuery, scale_change
from notebooks.recipes import root_for
from webhooks.local_agents import serve_agents

if TYPE_CHECKING:
    from engine.recipes.clouds import CloudsConfig

PAGE = 1000


def home_from_env() -> Path:
    """``$SLIPSTREAM_HOME``, else ``.slipstream`` here (as the CLI).

    >>> os.environ.pop("SLIPSTREAM_HOME", None) and None
    >>> home_from_env()
    PosixPath('.slipstream')
    """
    return Path(os.environ.get("SLIPSTREAM_HOME", ".slipstream"))


class EmbeddedBackend:
    """Calls :class:`~engine.service.Service` of one home as its local actor."""

    def __init__(self, service: Service, root: Path | None = None) -> None:
        self.service = service
        self.actor = service.local_actor()
        self.root = root
        self.where = str(service.home)
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, home: Path | None = None, root: Path | None = None) -> EmbeddedBackend:
        home = home or home_from_env()
        try:
            return cls(Service(home, serve_agents(home)), root)
        except SlipstreamError as err:
            raise BackendError(f"service home {home}: {err}") from err

    def whoami(self) -> str:
        return self.actor.name

    def clouds_config(self) -> CloudsConfig:
        try:
            return self.service.clouds()
        except SlipstreamError as err:
            raise BackendError(f"clouds.yaml: {err}") from err

    def clouds(self) -> list[str]:
        return sorted({"local", *self.clouds_config().names()})

    def _overrides(self, request: DeployRequest) -> Overrides:
        return Overrides.parse(
            inputs=[f"{k}={v}" for k, v in request.inputs.items()],
            clouds=[f"{k}={v}" for k, v in request.clouds.items()],
            multiplicity=[f"{k}={v}" for k, v in request.multiplicity.items()],
        )

    def plan(self, request: DeployRequest) -> dict[str, Any]:
        from engine.recipes.loader import RecipeLoader

        try:
            config = self.service.clouds()
            ref = Path(request.recipe) if Path(request.recipe).is_file() else request.recipe
            loader = RecipeLoader(root_for(request.recipe, self.root), config)
            dep = loader.deployment(ref, self._overrides(request), require_values=True)
            clouds = self.service.manager().preview(dep, config)
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        return {"deployment": dep.name, "user": self.actor.name, "clouds": clouds}

    def deploy(self, request: DeployRequest) -> str:
        ref: str | Path = request.recipe
        if Path(request.recipe).is_file():
            ref = Path(request.recipe)
        root = root_for(request.recipe, self.root)
        try:
            run_id = self.service.deploy(
                self.actor, ref, self._overrides(request), root, walk=root == self.root
            )
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        self._background(run_id, lambda: self.service.drive(run_id))
        return run_id

    def _background(self, run_id: str, work: Callable[[], object]) -> None:
        def body() -> None:
            try:
                work()
            except SlipstreamError as err:  # the run's events and abort say it too
                self.service.store.add_event(run_id, "note", f"notebook: {err}")
            except Exception as err:
                self.service.store.add_event(run_id, "error", f"notebook: {err!r}")

        thread = threading.Thread(target=body, name=f"slipstream-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id] = thread
        thread.start()

    def busy(self, run_id: str) -> bool:
        """Whether this process is driving or destroying ``run_id`` right now."""
        thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()

    def runs(self, query: RunQuery) -> list[dict[str, Any]]:
        where = RunFilter(
            states=(query.state,) if query.state else (),
            deployment=query.recipe or None,
            users=(query.user,) if query.user else None,
            limit=query.limit,
        )
        try:
            found = self.service.list_runs(self.actor, where)
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        docs = [brief(run) for run in found]
        if query.cloud:
            docs = [d for d in docs if query.cloud in d["clouds"]]
        return docs

    def run(self, run_id: str) -> dict[str, Any]:
        try:
            doc = self.service.get_run(self.actor, run_id)
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        doc.pop("events", None)
        doc["busy"] = self.busy(run_id)
        return doc

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            while True:
                page = self.service.events(self.actor, run_id, after, PAGE)
                found.extend(e.to_json() for e in page)
                if len(page) < PAGE:
                    return found
                after = page[-1].id
        except SlipstreamError as err:
            raise BackendError(str(err)) from err

    def terminate(self, run_id: str) -> str:
        try:
            run = self.service.run_for(self.actor, run_id, "deploy")
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        driving = self._threads.get(run_id)

        def destroy() -> None:
            if driving is not None and driving.is_alive():
                self.service.coordinator.abort(run_id, "terminated by user", cancel=True)
                driving.join()
            self.service.terminate(self.actor, run_id)

        self._background(run_id, destroy)
        return run.state

    def reports(self, run_id: str) -> list[tuple[str, bytes | None]]:
        try:
            self.service.run_for(self.actor, run_id)
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        folder = self.service.home / "runs" / run_id / "reports"
        found: list[tuple[str, bytes | None]] = []
        for path in sorted(folder.glob("*.tar.gz")) if folder.is_dir() else []:
            found.append((path.name, path.read_bytes()))
        return found

    def scale(self, run_id: str, node: str, count: int) -> str:
        try:
            change = scale_change(self.service.params(self.actor, run_id), node, count)
            # Refusals (not scalable, not Ready, a bad spec) come now, before the thread.
            self.service.check_scale(self.actor, run_id, [change])
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        if self.busy(run_id):
            raise BackendError(f"run `{run_id}` is busy in this notebook")
        self._background(run_id, lambda: self.service.scale(self.actor, run_id, [change]))
        return str(self.service.get_run(self.actor, run_id)["state"])

    def close(self) -> None:
        self.service.close()


def brief(run: RunRecord) -> dict[str, Any]:
    """A run as the REST API lists it, with the clouds its nodes use."""
    try:
        spec = json.loads(run.spec)
        clouds = sorted({c for node in spec["nodes"].values() for c in node["clouds"]})
    except (ValueError, KeyError, TypeError, AttributeError):
        clouds = []
    return {**run.brief(), "clouds": clouds}
