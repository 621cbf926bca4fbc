"""The HTTP server's app factory: ``create_app(home, coordinator, service=None)``.

An ASGI (Starlette) app: the agent API's asynchronous routes and ``/healthz`` always; with
a resident ``service``, the REST API (``/api/v1``) beside them, and with ``slack`` (the
WSGI app of :class:`chatops.app.SlackFrontDoor`) Slack's endpoint at ``/slack/events``.
Flask apps (the REST API, Slack's Bolt adapter) are mounted through a WSGI bridge, so one
process and one port serve everything.

Example:
    >>> from starlette.testclient import TestClient  # doctest: +SKIP
    >>> TestClient(create_app(Path("."), coordinator)).get("/healthz").json()  # doctest: +SKIP
    {'ok': True}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from engine.coordination.coordinator import Coordinator
from webhooks.agent_api import AgentAPI, HotRoutes

if TYPE_CHECKING:
    from engine.service import Service


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def metrics_route(service: Service) -> Route:
    """``/metrics`` (Prometheus text format): agent requests, wake latency, jobs and runs."""
    from starlette.concurrency import run_in_threadpool

    from engine.scaled.ops import metrics_text

    async def metrics(request: Request) -> Response:
        text = await run_in_threadpool(metrics_text, service.store)
        return Response(text, media_type="text/plain; version=0.0.4")

    return Route("/metrics", metrics, methods=["GET"])


async def not_found(request: Request, exc: Exception) -> Response:
    message = f"no route {request.method} {request.url.path}"
    return JSONResponse(refusal_body(request, "not_found", message), 404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    message = f"{request.method} is not allowed here"
    return JSONResponse(refusal_body(request, "method_not_allowed", message), 405)


def refusal_body(request: Request, code: str, message: str) -> dict[str, Any]:
    """The REST API's error shape under ``/api/`` (a path the bridge to it does not take,
    such as one with a line break), the agent API's elsewhere."""
    if request.url.path.startswith("/api/"):
        return {"code": code, "message": message, "details": {}}
    return {"error": message}


class App(Starlette):
    """Starlette, with the agent API's hot routes served before its middleware and router."""

    def __init__(self, hot: HotRoutes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.hot.find(scope)
            if found is not None:
                scope["app"] = self
                await self.hot.serve(found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    home: Path,
    coordinator: Coordinator,
    service: Service | None = None,
    *,
    slack: Any = None,
    git: Any = None,
) -> Starlette:
    """The app serving the agent API for the runs of ``coordinator``'s store, and with a
    resident ``service`` its REST API (and ``slack``'s endpoint when given)."""
    agent_routes = AgentAPI(home, coordinator).routes()
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"]), *agent_routes]
    if slack is not None:
        from a2wsgi import WSGIMiddleware

        bridge: Any = WSGIMiddleware(slack, workers=16)
        routes.append(Mount("/slack", app=bridge))
    if git is not None:  # a webhooks.git.hooks.GitFrontDoor: POST /hooks/{repository}
        routes.extend(git.routes())
    if service is not None:
        routes.append(metrics_route(service))
        routes.extend(rest_routes(service))
    return App(
        HotRoutes(agent_routes),
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed},
    )


def rest_routes(service: Service) -> list[BaseRoute]:
    """The REST API's routes: its streams natively, the rest a Flask app behind a bridge."""
    from a2wsgi import WSGIMiddleware

    from webhooks.rest import create_rest_app, stream_routes

    bridged: Any = WSGIMiddleware(create_rest_app(service), workers=32)  # type: ignore[arg-type]
    # Last, so the agent API's routes match first; Flask sees whole paths (/api/v1/…).
    return [*stream_routes(service), Mount("", app=bridged)]
