"""The REST API (``/api/v1``): runs, plans, parameters, events, approvals, users and tokens.

An APIFlask app, served through the WSGI bridge of :mod:`webhooks.app`: its marshmallow
schemas (:mod:`~webhooks.rest.schemas`) validate requests, shape answers and make the
OpenAPI document at ``/api/v1/openapi.json``. The live event stream is a native
asynchronous route (:mod:`~webhooks.rest.stream`), documented in the same document. Every
call authenticates a bearer token and calls the service facade; errors have one shape
everywhere: ``{"code", "message", "details"}`` (:mod:`~webhooks.rest.errors`).

Example:
    GET /api/v1/whoami   Authorization: Bearer ss_…   → 200 {"name": "alice", "admin": false, …}
"""

from __future__ import annotations

import warnings
from typing import Any

from apiflask import APIFlask

from engine.service import Service
from webhooks.rest import errors
from webhooks.rest.accounts import accounts_blueprint
from webhooks.rest.auth import bearer_auth
from webhooks.rest.openapi import DictRules, merge_duplicates, require_bodies
from webhooks.rest.repositories import repositories_blueprint
from webhooks.rest.runs import runs_blueprint
from webhooks.rest.stream import document_streams, stream_routes

#: Largest request body: a recipe bundle is at most 10 MiB of YAML, as JSON.
MAX_BODY = 16 * 1024 * 1024


def create_rest_app(service: Service) -> APIFlask:
    """The REST API over ``service``."""
    app = APIFlask(
        "slipstream",
        title="SlipStream on Terraform",
        version="1",
        docs_path=None,
        spec_path="/api/v1/openapi.json",
        spec_plugins=[DictRules()],
    )
    app.description = (
        "Runs of multi-cloud deployments from YAML recipes, driven by the resident service. "
        "Authenticate with `Authorization: Bearer <token>`."
    )
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.servers = [{"url": "/", "description": "this service"}]
    errors.install(app)
    auth = bearer_auth(service)
    app.register_blueprint(runs_blueprint(service, auth))
    app.register_blueprint(accounts_blueprint(service, auth))
    app.register_blueprint(repositories_blueprint(service, auth))
    app.spec_processor(finish_document)
    with warnings.catch_warnings():
        # Made once, now: APIFlask registers a schema that is both nested and top-level
        # twice (apispec warns; merge_duplicates undoes it).
        warnings.filterwarnings("ignore", ".* has already been added to the spec")
        app.spec  # noqa: B018 - generates and caches the document
    return app


def finish_document(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """The OpenAPI document as APIFlask made it, completed (see :mod:`webhooks.rest.openapi`)."""
    assert isinstance(spec, dict)  # SPEC_FORMAT is json
    return document_streams(require_bodies(merge_duplicates(spec)))


__all__ = ["create_rest_app", "stream_routes"]
