"""The service facade: the one API every front door calls (CLI, REST, Git, Slack, notebooks).

Each call carries the acting user. The embedded default keeps runs in SQLite under the
service home and runs jobs in-process; the HTTP server agents talk to is injected by the
composition root (the CLI), so the engine never imports a web framework.

Example (not run as a doctest: it deploys)::

        service = Service(Path(".slipstream"), serve=None)
        run_id = service.deploy("alice", "webapp")
        service.drive(run_id)
        # 'Ready'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.coordination.coordinator import Coordinator
from engine.coordination.hub import Hub
from engine.files import private_home
from engine.store.runstore import Event, RunRecord, RunStore

# Recipes (PyYAML, jsonschema), the compiler, the run manager and Terraform are imported by
# the calls that need them: listing runs must not pay for deploying them (a CLI start).
if TYPE_CHECKING:
    from engine.recipes.clouds import CloudsConfig
    from engine.recipes.overrides import Overrides
    from engine.runs.endpoints import Endpoints
    from engine.runs.manager import RunManager

# Given the coordinator, starts serving agents; returns (their addresses, stop function).
Serve = Callable[[Coordinator], "tuple[Endpoints, Callable[[], None]]"]


class Service:
    """Deploy, terminate and inspect runs of one service home."""

    def __init__(self, home: Path, serve: Serve | None, clouds_path: Path | None = None) -> None:
        self.home = home
        # What was made private in a home others could read (HomeUnusable when unsafe).
        self.repairs = private_home(home)
        url = os.environ.get("SLIPSTREAM_DATABASE_URL") or f"sqlite:///{home.resolve()}/runs.db"
        self.store = RunStore.open(url)
        self.hub = Hub()
        self.coordinator = Coordinator(self.store, self.hub)
        self.clouds_path = clouds_path
        self._serve = serve
        self._stop: Callable[[], None] | None = None
        self._endpoints: Endpoints | None = None
        self._manager: RunManager | None = None

    def clouds(self) -> CloudsConfig:
        from engine.recipes.clouds import load_home_clouds

        return load_home_clouds(self.home, self.clouds_path)

    def manager(self) -> RunManager:
        """The run manager; the agent server starts when a run is first driven."""
        if self._manager is None:
            from engine.runs.manager import RunManager
            from engine.terraform.binary import find_terraform

            self._manager = RunManager(
                self.home,
                self.store,
                self.hub,
                find_terraform(self.home),
                coordinator=self.coordinator,
                serve=self._start_server if self._serve is not None else None,
            )
        return self._manager

    def _start_server(self) -> Endpoints:
        if self._endpoints is None:
            assert self._serve is not None
            self._endpoints, self._stop = self._serve(self.coordinator)
        return self._endpoints

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def deploy(
        self,
        user: str,
        ref: str | Path,
        overrides: Overrides | None = None,
        root: Path | None = None,
        *,
        walk: bool = True,
    ) -> str:
        """Check and compile a deployment, store the run; :meth:`drive` then runs it.
        ``walk``: recipes are found anywhere below ``root`` (a checkout), else only in it."""
        from engine.recipes.loader import RecipeLoader

        config = self.clouds()
        loader = RecipeLoader(root, config, walk=walk)
        dep = loader.deployment(ref, overrides, require_values=True)
        return self.manager().create(dep, config, user, recipes=loader.files)

    def drive(self, run_id: str) -> str:
        return self.manager().drive(run_id)

    def terminate(self, user: str, run_id: str) -> str:
        self.store.add_event(run_id, "terminate", f"terminate requested by {user}")
        return self.manager().terminate(run_id)

    def get_run(self, user: str, run_id: str) -> dict[str, Any]:
        """The run's document (see :func:`engine.runs.manager.run_summary`)."""
        from engine.compile.runspec import sensitive_keys
        from engine.runs.manager import run_summary

        return run_summary(self.store, run_id, sensitive_keys(self.coordinator.spec(run_id)))

    def list_runs(self, user: str) -> list[RunRecord]:
        return self.store.list_runs()

    def events(self, user: str, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """One page of a run's events after the id ``after``: page on with the last id
        until a page comes back shorter than ``limit``."""
        return self.store.events(run_id, after, limit)

    def params(self, user: str, run_id: str) -> dict[str, str]:
        from engine.compile.runspec import sensitive_keys
        from engine.runs.manager import masked_params

        return masked_params(self.store, run_id, sensitive_keys(self.coordinator.spec(run_id)))
