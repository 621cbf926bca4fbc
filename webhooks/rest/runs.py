"""Runs and plans: create from an uploaded recipe bundle, list, read, act on, and plan.

Routes only turn requests into calls of the service facade and its answers into documents
(the schemas of :mod:`webhooks.rest.schemas`); the facade checks rights and changes nothing
when it refuses.

Example:
    POST /api/v1/runs {"deployment": "webapp", "files": {}, "inputs": {"greeting": "Hi"}}
    → 201 {"id": "3f2a9c1e0b7d4a55", "state": "Initializing", …}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import APIBlueprint, HTTPTokenAuth
from flask.typing import ResponseReturnValue

import webhooks.rest.schemas as s
from engine.access import Actor
from engine.recipes.overrides import Overrides
from engine.service import Service
from engine.store.runstore import RunFilter
from webhooks.rest.auth import current_actor


def overrides(body: dict[str, Any]) -> Overrides:
    """The deploy-time overrides of a validated request body."""
    clouds = {node: tuple(names) for node, names in body["clouds"].items()}
    return Overrides(body["inputs"], clouds, body["multiplicity"])


def run_document(service: Service, actor: Actor, run_id: str, last: int) -> dict[str, Any]:
    """The run as :meth:`Service.get_run` gives it, with only its ``last`` events, the
    count of earlier ones (``GET …/events?after=`` pages through them) and its checkpoint."""
    run = service.run_for(actor, run_id)
    doc = service.get_run(actor, run_id)
    events = doc["events"]
    shown = events[len(events) - last :] if last else []
    doc.update(events=shown, events_before=len(events) - len(shown), checkpoint=run.checkpoint)
    return doc


def runs_blueprint(service: Service, auth: HTTPTokenAuth) -> APIBlueprint:
    """The routes under ``/api/v1/runs`` and ``/api/v1/plans``."""
    bp = APIBlueprint("runs", __name__, url_prefix="/api/v1", tag="Runs")

    def actor() -> Actor:
        return current_actor(auth)

    @bp.post("/runs")
    @bp.auth_required(auth)
    @bp.input(s.RunCreate, arg_name="body")
    @bp.output(s.Run, status_code=201, description="The run, started or held for approval")
    @bp.doc(responses=[413, 422])
    def create_run(body: dict[str, Any]) -> ResponseReturnValue:
        """Start a run of an uploaded recipe bundle

        422 lists every problem of the recipes with its file, line and column; nothing is
        stored then.
        """
        run_id = service.deploy_bundle(
            actor(), body["files"], body["deployment"], overrides(body), hold=body["hold"]
        )
        location = {"Location": f"/api/v1/runs/{run_id}"}
        return run_document(service, actor(), run_id, 100), 201, location

    @bp.get("/runs")
    @bp.auth_required(auth)
    @bp.input(s.RunListQuery, location="query", arg_name="query")
    @bp.output(s.RunPage)
    def list_runs(query: dict[str, Any]) -> dict[str, Any]:
        """Runs you may see, newest first

        Yours, those of deployments you hold a right on, or all of them for admins.
        """
        where = RunFilter(
            states=tuple(query.get("state") or ()),
            deployment=query.get("deployment"),
            users=(query["user"],) if "user" in query else None,
            before=float(query["cursor"]) if "cursor" in query else None,
            limit=query["limit"],
        )
        runs = service.list_runs(actor(), where)
        more = len(runs) == where.limit
        return {
            "runs": [r.brief() for r in runs],
            "next": repr(runs[-1].created_at) if more else None,
        }

    @bp.get("/runs/<run_id>")
    @bp.auth_required(auth)
    @bp.input(s.RunQuery, location="query", arg_name="query")
    @bp.output(s.Run)
    @bp.doc(responses=[403])
    def get_run(run_id: str, query: dict[str, Any]) -> dict[str, Any]:
        """A run: state, parameters (secrets masked) and its last events"""
        return run_document(service, actor(), run_id, query["events"])

    def action(name: str, summary: str, call: Callable[[Actor, str], str]) -> None:
        def act(run_id: str) -> ResponseReturnValue:
            return {"id": run_id, "state": call(actor(), run_id)}, 202

        act.__name__ = name
        act.__doc__ = summary
        decorated = bp.doc(responses=[403, 409, 503])(act)
        decorated = bp.output(s.RunAction, status_code=202)(decorated)
        decorated = bp.auth_required(auth)(decorated)
        bp.post(f"/runs/<run_id>/{name}")(decorated)

    action(
        "terminate",
        "Terminate a run\n\nReady → Finalizing → Done, or cancel a run on its way; "
        "the destroy goes on as a job. Needs `deploy` on the run's deployment (or the run).",
        service.terminate,
    )
    action(
        "resume",
        "Drive a run again from its last checkpoint\n\nNeeds `deploy` (or the run).",
        service.resume,
    )
    action(
        "approve",
        "Let a run held for approval go on\n\nNeeds `approve` on its deployment.",
        service.approve,
    )
    action(
        "reject",
        "Refuse a run held for approval: it is cancelled, never applied\n\n"
        "Needs `approve` on its deployment.",
        service.reject,
    )

    @bp.post("/runs/<run_id>/scale")
    @bp.auth_required(auth)
    @bp.input(s.ScaleRequest, arg_name="body")
    @bp.output(s.RunAction, status_code=202)
    @bp.doc(responses=[400, 403, 409, 503])
    def scale(run_id: str, body: dict[str, Any]) -> ResponseReturnValue:
        """Scale a scalable run in Ready

        `changes` `["worker=+2"]` adds two instances, `["worker=-1"]` removes the newest;
        `remove` `["worker.3"]` removes that one (one node, one direction, at most 100).
        409 when the run is not scalable or not in Ready. Needs `deploy` on the run.
        """
        state = service.scale(actor(), run_id, body["changes"], body["remove"])
        return {"id": run_id, "state": state}, 202

    @bp.get("/runs/<run_id>/params")
    @bp.auth_required(auth)
    @bp.output(s.Params)
    @bp.doc(responses=[403])
    def params(run_id: str) -> dict[str, Any]:
        """A run's runtime parameters (sensitive values masked)"""
        return {"id": run_id, "params": service.params(actor(), run_id)}

    @bp.get("/runs/<run_id>/events")
    @bp.auth_required(auth)
    @bp.input(s.EventQuery, location="query", arg_name="query")
    @bp.output(s.EventPage)
    @bp.doc(responses=[403])
    def events(run_id: str, query: dict[str, Any]) -> dict[str, Any]:
        """A run's events after an event id, oldest first

        Page with `after` = the last id seen; `…/events/stream` sends them live.
        """
        found = service.events(actor(), run_id, query["after"], query["limit"])
        return {"events": [e.to_json() for e in found]}

    @bp.post("/plans")
    @bp.auth_required(auth)
    @bp.input(s.Bundle, arg_name="body")
    @bp.output(s.Plan)
    @bp.doc(responses=[413, 422])
    def plan(body: dict[str, Any]) -> dict[str, Any]:
        """Plan a recipe bundle without starting a run

        Compiles it and runs `terraform plan` for each cloud; counts what a deploy would
        add, change and destroy, per cloud and per node.
        """
        return service.plan(actor(), body["files"], body["deployment"], overrides(body))

    return bp
