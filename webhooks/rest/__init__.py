"""The REST API (``/api/v1``): runs, parameters, events, approvals, users and tokens.

An APIFlask app (OpenAPI generated from the schemas that validate requests), served through
the WSGI bridge of :mod:`webhooks.app`; its live streams are native asynchronous routes.
Every call authenticates a bearer token and calls the service facade; errors have one
shape everywhere: ``{"code", "message", "details"}``.

Example:
    GET /api/v1/whoami   Authorization: Bearer ss_…   → 200 {"name": "alice", "admin": false}
"""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from starlette.routing import BaseRoute

from engine.errors import (
    AccessDenied,
    Conflict,
    NotAuthenticated,
    NotFound,
    RecipeInvalid,
    SlipstreamError,
)
from engine.service import Service

STATUS = {NotAuthenticated: 401, AccessDenied: 403, NotFound: 404, Conflict: 409}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


def create_rest_app(service: Service) -> APIFlask:
    """The REST API over ``service``."""
    app = APIFlask(
        "slipstream",
        title="SlipStream on Terraform",
        version="1",
        docs_path=None,
        spec_path="/api/v1/openapi.json",
    )
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024

    @app.before_request
    def authenticate() -> ResponseReturnValue | None:
        if request.path == "/api/v1/openapi.json":
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return jsonify(error_body("unauthenticated", "missing bearer token")), 401
        try:
            g.actor = service.authenticate(token.strip())
        except NotAuthenticated as err:
            return jsonify(error_body("unauthenticated", str(err))), 401
        return None

    @app.errorhandler(SlipstreamError)
    def refused(err: SlipstreamError) -> ResponseReturnValue:
        if isinstance(err, RecipeInvalid):
            problems = [p.to_json() for p in err.problems]
            return jsonify(
                error_body("recipe_invalid", "the recipe is invalid", {"problems": problems})
            ), 422
        status = next((s for kind, s in STATUS.items() if isinstance(err, kind)), 400)
        details = {"right": err.right, "scope": err.scope} if isinstance(err, AccessDenied) else {}
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict"}
        return jsonify(error_body(code.get(status, "bad_request"), str(err), details)), status

    @app.get("/api/v1/whoami")
    def whoami() -> dict[str, Any]:
        return {"name": g.actor.name, "admin": g.actor.admin}

    return app


def stream_routes(service: Service) -> list[BaseRoute]:
    """The REST API's live streams, served natively on the event loop."""
    return []
