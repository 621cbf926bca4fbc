"""Repositories kept deployed (GitOps): list, register, read, forget, reconcile now.

Any authenticated user may read them (no secret is stored: only the names of the
environment variables holding them); administrators register, remove and sync.

Example:
    POST /api/v1/repositories {"url": "https://github.com/acme/infra.git", "branch": "main",
                               "secret_env": "INFRA_HOOK_SECRET"}
    → 201 {"name": "infra", …}; deliveries then go to POST /hooks/infra
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, HTTPTokenAuth, Schema
from apiflask.fields import Dict, Float, List, Nested, String
from apiflask.validators import Length, OneOf, Regexp
from flask.typing import ResponseReturnValue

from engine.errors import NotFound
from engine.gitops.reconcile import GitOps
from engine.gitops.registry import HOSTS, NAME_RE, Repository, default_name
from engine.service import Service
from webhooks.rest.auth import current_actor

ENV = r"^([A-Za-z_][A-Za-z0-9_]{0,127})?$"


class RepositoryCreate(Schema):
    url = String(required=True, validate=Length(min=1, max=2000))
    name = String(load_default=None, validate=Regexp(NAME_RE))
    branch = String(load_default="main", validate=Regexp(r"^[A-Za-z0-9._/-]{1,200}$"))
    secret_env = String(load_default="", validate=Regexp(ENV))
    host = String(load_default="none", validate=OneOf(HOSTS))
    api_url = String(load_default="", validate=Length(max=2000))
    project = String(load_default="", validate=Length(max=200))
    token_env = String(load_default="", validate=Regexp(ENV))


class RepositoryDoc(Schema):
    name = String(required=True)
    url = String(required=True)
    branch = String(required=True)
    secret_env = String(required=True)
    host = String(required=True)
    api_url = String(required=True)
    project = String(required=True)
    token_env = String(required=True)
    created_at = Float(required=True)
    last_commit = String(required=True)
    last_error = String(required=True)
    deployments = Dict(
        metadata={"description": "declaration → {run, commit, pending_run, pending_commit}"}
    )


class RepositoryList(Schema):
    repositories = List(Nested(RepositoryDoc), required=True)


class SyncQueued(Schema):
    name = String(required=True)
    status = String(required=True, metadata={"example": "queued"})


def repositories_blueprint(service: Service, auth: HTTPTokenAuth) -> APIBlueprint:
    """The routes under ``/api/v1/repositories``."""
    bp = APIBlueprint("repositories", __name__, url_prefix="/api/v1", tag="Repositories")
    gitops = GitOps(service)

    @bp.get("/repositories")
    @bp.auth_required(auth)
    @bp.output(RepositoryList)
    def list_repositories() -> dict[str, Any]:
        """Registered repositories"""
        current_actor(auth)
        return {"repositories": [gitops.status(r.name) for r in gitops.registry.all()]}

    @bp.post("/repositories")
    @bp.auth_required(auth)
    @bp.input(RepositoryCreate, arg_name="body")
    @bp.output(RepositoryDoc, status_code=201)
    @bp.doc(responses=[403, 409])
    def add_repository(body: dict[str, Any]) -> ResponseReturnValue:
        """Register a repository (administrators)

        Its webhook deliveries go to `POST /hooks/{name}`; `secret_env` and `token_env`
        name environment variables of the service, never the secrets themselves.
        """
        from engine.errors import Conflict

        current_actor(auth).require_admin()
        name = body.pop("name") or default_name(body["url"])
        try:
            gitops.registry.add(Repository(name, **body))
        except ValueError as err:
            raise Conflict(str(err)) from err
        return gitops.status(name), 201, {"Location": f"/api/v1/repositories/{name}"}

    @bp.get("/repositories/<name>")
    @bp.auth_required(auth)
    @bp.output(RepositoryDoc)
    @bp.doc(responses=[404])
    def get_repository(name: str) -> dict[str, Any]:
        """A repository, and the runs serving its declarations"""
        current_actor(auth)
        return gitops.status(name)

    @bp.delete("/repositories/<name>")
    @bp.auth_required(auth)
    @bp.output({}, status_code=204)
    @bp.doc(responses=[403, 404])
    def remove_repository(name: str) -> ResponseReturnValue:
        """Forget a repository (administrators); its runs keep running"""
        current_actor(auth).require_admin()
        if not gitops.registry.remove(name):
            raise NotFound(f"unknown repository `{name}`")
        return "", 204

    @bp.post("/repositories/<name>/sync")
    @bp.auth_required(auth)
    @bp.output(SyncQueued, status_code=202)
    @bp.doc(responses=[403, 404, 503])
    def sync_repository(name: str) -> ResponseReturnValue:
        """Fetch and reconcile now (administrators); queued like a push"""
        current_actor(auth).require_admin()
        gitops.repository(name)
        assert service.jobs is not None  # the REST API is served by the resident service
        service.jobs.submit(f"gitops:{name}", "sync", lambda: gitops.reconcile(name, "sync"))
        return {"name": name, "status": "queued"}, 202

    return bp
