"""Bearer tokens: every route but the OpenAPI document needs one (``slipstream token
create``); the actor it names is who the call acts for.

Example:
    GET /api/v1/whoami   Authorization: Bearer ss_…   → 200 {"name": "alice", "admin": false, …}
"""

from __future__ import annotations

from apiflask import HTTPError, HTTPTokenAuth
from apiflask.types import ResponseReturnValueType

from engine.access import Actor
from engine.service import Service
from webhooks.rest.errors import CHALLENGE, error_body


def bearer_auth(service: Service) -> HTTPTokenAuth:
    """The routes' authentication: a refused token is a 401 that says why (unknown,
    revoked, expired)."""
    auth = HTTPTokenAuth(
        scheme="Bearer",
        description="An API token, made with `slipstream token create --user NAME` or "
        "`POST /api/v1/tokens`",
    )

    def verify(token: str) -> Actor:
        return service.authenticate(token)  # NotAuthenticated: a 401 saying why

    def missing(error: HTTPError) -> ResponseReturnValueType:
        return error_body("unauthenticated", "missing bearer token"), 401, CHALLENGE

    auth.verify_token(verify)
    auth.error_processor(missing)

    return auth


def current_actor(auth: HTTPTokenAuth) -> Actor:
    """The actor of the request being served."""
    actor = auth.current_user
    assert isinstance(actor, Actor)
    return actor
