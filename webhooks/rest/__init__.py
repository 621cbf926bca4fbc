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

import re
import warnings
from typing import Any

from apiflask import APIFlask

from engine.service import Service
from webhooks.rest import errors
from webhooks.rest.accounts import accounts_blueprint
from webhooks.rest.auth import bearer_auth
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
    app.spec_processor(lambda spec: merge_duplicates(document_streams(spec)))
    with warnings.catch_warnings():
        # Made once, now: APIFlask registers a schema that is both nested and top-level
        # twice (apispec warns; merge_duplicates undoes it).
        warnings.filterwarnings("ignore", ".* has already been added to the spec")
        app.spec  # noqa: B018 - generates and caches the document
    return app


def merge_duplicates(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """Point references to a component registered twice (``User1``, same as ``User``) at
    the first one, and drop the copy.

    >>> spec = {"components": {"schemas": {"User": {"type": "object"},
    ...                                    "User1": {"type": "object"}}},
    ...         "paths": {"/u": {"$ref": "#/components/schemas/User1"}}}
    >>> merge_duplicates(spec)["paths"], list(spec["components"]["schemas"])
    ({'/u': {'$ref': '#/components/schemas/User'}}, ['User'])
    """
    assert isinstance(spec, dict)
    schemas = spec["components"]["schemas"]
    copies = {}
    for name in list(schemas):
        match = re.fullmatch(r"(.*\D)[0-9]+", name)
        if match and schemas.get(match.group(1)) == schemas[name]:
            copies[f"#/components/schemas/{name}"] = f"#/components/schemas/{match.group(1)}"
            del schemas[name]

    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: copies.get(v, v) if k == "$ref" else repoint(v) for k, v in node.items()}
        if isinstance(node, list):
            return [repoint(item) for item in node]
        return node

    return repoint(spec) if copies else spec


__all__ = ["create_rest_app", "stream_routes"]
