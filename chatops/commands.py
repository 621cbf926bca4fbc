"""Running chat commands: a parsed command and the acting user in, a typed result out.

This is the only chatops module that calls the service facade for people; it renders
nothing (:mod:`chatops.blocks` does) and knows no Slack, so any text front end can use it.
Refusals are results too (:class:`Refused`), with the service's own wording: the missing
right, the unknown run, the invalid recipe.

Example (not run: it needs a service)::

        commands = ChatCommands(service, lambda: [Path("/srv/recipes")])
        commands.run(actor, parse("list mine"))
        # RunList(runs=[...], scope='mine')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatops.grammar import (
    Approve,
    Command,
    Deploy,
    Destroy,
    Help,
    ListRuns,
    Logs,
    Params,
    ParseError,
    Scale,
    Status,
)
from chatops.recipes import FoundRecipe, find_deployment
from engine.access import Actor
from engine.errors import RecipeInvalid, SlipstreamError
from engine.recipes.overrides import Overrides
from engine.service import Service
from engine.store.runstore import Event, RunFilter, RunRecord

LIST_LIMIT = 15
LOG_LINES = 30


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """Nothing was done, for this reason."""

    reason: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class HelpText:
    """The usage of every command, or of ``topic``."""

    topic: str | None


@dataclass(frozen=True)
class RunStatus:
    """A run's document (:meth:`engine.service.Service.get_run`)."""

    doc: Mapping[str, Any]


@dataclass(frozen=True)
class RunList:
    """Runs, newest first (``scope``: mine or all)."""

    runs: Sequence[RunRecord]
    scope: str


@dataclass(frozen=True)
class RunParams:
    """A run's parameters, sensitive values masked."""

    run_id: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class RunLogs:
    """A run's last events."""

    run_id: str
    events: Sequence[Event]


@dataclass(frozen=True)
class Acted:
    """A run was asked to move (``action``: terminate, approve); ``state`` is its state now."""

    run_id: str
    action: str
    state: str


@dataclass(frozen=True)
class NotYet:
    """A feature still to come (``what``: scaling)."""

    what: str


@dataclass(frozen=True)
class Prepared:
    """A deploy ready to go: the recipe found, the overrides resolved, the right checked."""

    command: Deploy
    recipe: FoundRecipe
    overrides: Overrides = field(default_factory=Overrides)


Result = Refused | HelpText | RunStatus | RunList | RunParams | RunLogs | Acted | NotYet


def refusal(err: Exception) -> Refused:
    """The result for a refused call, in the words of the error that refused it."""
    if isinstance(err, RecipeInvalid):
        problems = tuple(str(p).replace("--input ", "") for p in err.problems)
        return Refused("nothing was started: the recipe, or a value given, is invalid", problems)
    return Refused(str(err))


class ChatCommands:
    """Runs commands for actors against one service; ``places`` says where recipes are
    looked up (see :func:`chatops.recipes.find_deployment`)."""

    def __init__(self, service: Service, places: Callable[[], Sequence[Path]]) -> None:
        self.service = service
        self.places = places

    def prepare(self, actor: Actor, command: Deploy) -> Prepared | Refused:
        """Find the recipe, resolve the overrides and check both, as the deploy will (the
        actor needs ``deploy`` on it); nothing is stored."""
        try:
            found = find_deployment(command.recipe, self.places())
            actor.check("deploy", found.name)
            overrides = command.overrides(found.nodes)
            self.service.check(actor, found.path, overrides, found.root)
            return Prepared(command, found, overrides)
        except (SlipstreamError, ParseError) as err:
            return refusal(err)

    def deploy(self, actor: Actor, prepared: Prepared, origin: Mapping[str, Any]) -> str | Refused:
        """Store and start the run (held for an approval for ``plan``); its id."""
        try:
            return self.service.deploy(
                actor,
                prepared.recipe.path,
                prepared.overrides,
                prepared.recipe.root,
                hold=prepared.command.hold,
                origin=origin,
            )
        except SlipstreamError as err:
            return refusal(err)

    def run(self, actor: Actor, command: Command) -> Result:
        """Any command but deploy (a front end drives that one: it posts before and after)."""
        try:
            return self._run(actor, command)
        except SlipstreamError as err:
            return refusal(err)

    def _run(self, actor: Actor, command: Command) -> Result:
        service = self.service
        match command:
            case Help(topic):
                return HelpText(topic)
            case Status(None):
                mine = service.list_runs(actor, RunFilter(users=(actor.name,), limit=1))
                if not mine:
                    return Refused("you have started no run yet; try `list all`")
                return RunStatus(service.get_run(actor, mine[0].id))
            case Status(run_id) if run_id is not None:
                return RunStatus(service.get_run(actor, run_id))
            case ListRuns(scope):
                users = (actor.name,) if scope == "mine" else None
                return RunList(
                    service.list_runs(actor, RunFilter(users=users, limit=LIST_LIMIT)), scope
                )
            case Params(run_id):
                return RunParams(run_id, service.params(actor, run_id))
            case Logs(run_id):
                events = service.events(actor, run_id, 0, 100_000)
                return RunLogs(run_id, events[-LOG_LINES:])
            case Destroy(run_id):
                return Acted(run_id, "terminate", service.terminate(actor, run_id))
            case Approve(run_id):
                return Acted(run_id, "approve", service.approve(actor, run_id))
            case Scale(run_id, changes):
                texts = [f"{node}={delta:+d}" for node, delta in changes]
                return Acted(run_id, "scale", service.scale(actor, run_id, texts))
            case Deploy():
                return Refused("a deploy goes through `prepare` and `deploy`")
        return Refused(f"`{command.to_text()}` is not supported here")
