"""One error shape everywhere: ``{"code", "message", "details"}``, from one classifier.

:func:`classify` maps the engine's errors to a status and a body (the Flask routes and the
native stream routes both use it); :func:`install` makes Flask's own errors (validation,
404, 405, 413, 500) take the same shape, without a traceback.

Example:
    >>> from engine.errors import AccessDenied
    >>> classify(AccessDenied("bob", "deploy", "webapp"))
    (403, {'code': 'forbidden', 'message': 'bob lacks the `deploy` right on deployment `webapp`', 'details': {'right': 'deploy', 'scope': 'webapp'}})
    >>> classify(KeyError("/srv/secret/path"))  # a bug: nothing of it reaches the client
    (500, {'code': 'internal', 'message': "internal error: see the service's log", 'details': {}})
"""  # noqa: E501

from __future__ import annotations

from typing import Any

from apiflask import APIFlask, HTTPError
from apiflask.types import ResponseReturnValueType
from flask.typing import ResponseReturnValue

from engine.errors import (
    AccessDenied,
    CloudError,
    Conflict,
    NotAuthenticated,
    NotFound,
    RecipeInvalid,
    SlipstreamError,
    TerraformError,
    UsageError,
)
from engine.runs.jobs import Stopped
from engine.runs.locks import RunLocked
from engine.store.runstore import Fenced
from webhooks.rest.schemas import Error

CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal",
    503: "unavailable",
}
#: What a client is told to send when it is not authenticated.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="slipstream"'}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error document."""
    return {"code": code, "message": message, "details": details or {}}


def classify(err: Exception) -> tuple[int, dict[str, Any]]:
    """(status, body) for an error of the engine; anything unexpected is a bare 500."""
    if isinstance(err, RecipeInvalid):
        problems = [p.to_json() for p in err.problems]
        return 422, error_body("recipe_invalid", "the recipe is invalid", {"problems": problems})
    if isinstance(err, TerraformError):
        details = {"step": err.step, "diagnostics": [str(d) for d in err.diagnostics]}
        return 422, error_body("terraform_failed", str(err), details)
    if isinstance(err, AccessDenied):
        return 403, error_body("forbidden", str(err), {"right": err.right, "scope": err.scope})
    kinds: list[tuple[type[Exception], int, str]] = [
        (NotAuthenticated, 401, "unauthenticated"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
        (UsageError, 400, "invalid"),
        (RunLocked, 409, "conflict"),
        (Fenced, 409, "conflict"),
        (CloudError, 422, "cloud_refused"),
        (Stopped, 503, "unavailable"),
    ]
    for kind, status, code in kinds:
        if isinstance(err, kind):
            return status, error_body(code, str(err))
    return 500, error_body("internal", "internal error: see the service's log")


def install(app: APIFlask) -> None:
    """Give every error of ``app`` the one shape, in answers and in the OpenAPI document."""
    app.config["VALIDATION_ERROR_STATUS_CODE"] = 400
    app.config["VALIDATION_ERROR_DESCRIPTION"] = "The request is invalid (details name fields)"
    app.config["HTTP_ERROR_SCHEMA"] = Error
    app.config["VALIDATION_ERROR_SCHEMA"] = Error

    @app.error_processor
    def http_error(error: HTTPError) -> ResponseReturnValueType:
        status = error.status_code
        message = error.message or "error"
        if status == 400 and error.detail:
            message = "the request is invalid"
        if status == 500:
            message = "internal error: see the service's log"
        headers = dict(error.headers or {})
        if status == 401:
            headers.update(CHALLENGE)
        body = error_body(CODES.get(status, "error"), message, error.detail)
        return body, status, headers

    def refused(err: Exception) -> ResponseReturnValue:
        status, body = classify(err)
        if status == 500:
            app.logger.error("unexpected error", exc_info=err)
        return body, status, CHALLENGE if status == 401 else {}

    app.register_error_handler(SlipstreamError, refused)
    app.register_error_handler(Stopped, refused)
