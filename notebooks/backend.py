"""What the panels ask of a service, whether it runs in the kernel or behind the REST API.

Two implementations: :class:`notebooks.embedded.EmbeddedBackend` (the service of a home,
in this process) and :class:`notebooks.remote.RemoteBackend` (a running ``slipstream
serve``). Documents are plain JSON shaped like the REST API's, so the widgets render both
alike. Every failure is a :class:`BackendError` whose text is what the panel shows.

Example:
    >>> str(BackendError("cannot reach http://127.0.0.1:9: connection refused"))
    'cannot reach http://127.0.0.1:9: connection refused'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.recipes.clouds import CloudsConfig


class BackendError(Exception):
    """A call the service refused or could not take; the text says why, for people."""


@dataclass(frozen=True)
class DeployRequest:
    """What a deploy or a plan asks for: a recipe (a path or a name), its deployment
    inputs (text, as the CLI's ``--input``), clouds per node (comma-separated, used
    round-robin) and instance counts."""

    recipe: str
    inputs: dict[str, str] = field(default_factory=dict)
    clouds: dict[str, str] = field(default_factory=dict)
    multiplicity: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunQuery:
    """Which runs the explorer lists (empty: any), newest first."""

    state: str = ""
    recipe: str = ""
    cloud: str = ""
    user: str = ""
    limit: int = 100


class Backend(Protocol):
    """The calls a panel makes; each raises :class:`BackendError` when refused."""

    #: Where it acts, for people: a home folder or a URL.
    where: str

    def whoami(self) -> str:
        """The acting user's name (remote: checks the URL and the token)."""

    def clouds(self) -> list[str]:
        """Cloud names a node may go to (``local`` always among them)."""

    def clouds_config(self) -> CloudsConfig:
        """The clouds recipes are checked against when the panel reads them."""

    def plan(self, request: DeployRequest) -> dict[str, Any]:
        """``{"deployment", "clouds": {cloud: {"add", "change", "destroy", "nodes"}}}``."""

    def deploy(self, request: DeployRequest) -> str:
        """Start a run; its id (it goes on in the background)."""

    def runs(self, query: RunQuery) -> list[dict[str, Any]]:
        """Brief run documents (id, deployment, user, state, abort, created_at, …)."""

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's document: state, abort, url, params (secrets masked)."""

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Every event after the id ``after``, oldest first."""

    def terminate(self, run_id: str) -> str:
        """Ask for a run's end (destroy); the state it is in now."""

    def reports(self, run_id: str) -> list[tuple[str, bytes | None]]:
        """(archive name, its bytes or None when this backend cannot fetch them)."""

    def scale(self, run_id: str, node: str, count: int) -> str:
        """Scale ``node`` of a scalable run in Ready to ``count`` instances (the newest go
        first when it shrinks); the run's state once the action is accepted."""

    def close(self) -> None:
        """Stop what the backend started (the agents' server, follow threads)."""


def scale_change(params: dict[str, str], node: str, count: int) -> str:
    """The service's relative scale spec that takes ``node`` from its multiplicity in the
    run's ``params`` to ``count`` instances.

    Example:
        >>> scale_change({"web:multiplicity": "2"}, "web", 5)
        'web=+3'
        >>> scale_change({"web:multiplicity": "2"}, "web", 1)
        'web=-1'
        >>> scale_change({"web:multiplicity": "2"}, "db", 1)
        Traceback (most recent call last):
        ...
        notebooks.backend.BackendError: this run has no node `db`
    """
    current = params.get(f"{node}:multiplicity")
    if current is None or not current.isdigit():
        raise BackendError(f"this run has no node `{node}`")
    if count < 0:
        raise BackendError(f"a node cannot have {count} instances")
    delta = count - int(current)
    if delta == 0:
        raise BackendError(f"node `{node}` already has {count} instance(s)")
    return f"{node}={delta:+d}"
