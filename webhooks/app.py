"""The HTTP server's app factory: ``create_app(home, coordinator)``.

An ASGI (Starlette) app: the agent API's asynchronous routes and ``/healthz``; the
service's other front doors are mounted beside them as they come.

Example:
    >>> from starlette.testclient import TestClient  # doctest: +SKIP
    >>> TestClient(create_app(Path("."), coordinator)).get("/healthz").json()  # doctest: +SKIP
    {'ok': True}
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.coordination.coordinator import Coordinator
from webhooks.agent_api import AgentAPI


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"no route {request.method} {request.url.path}"}, 404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"{request.method} is not allowed here"}, 405)


def create_app(home: Path, coordinator: Coordinator) -> Starlette:
    """The app serving the agent API for the runs of ``coordinator``'s store."""
    routes = [Route("/healthz", healthz, methods=["GET"]), *AgentAPI(home, coordinator).routes()]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
