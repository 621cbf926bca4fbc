"""The agent (coordination) API: what `ss-get`, `ss-set` and the agent daemon call.

Asynchronous routes on the server's event loop: a waiting agent costs a shared future,
not a thread. Each instance holds a bearer token scoped to its run; only its SHA-256 is
stored. Routes only turn HTTP into :class:`~engine.coordination.coordinator.Coordinator`
calls and back (``docs/agent-api.md`` is the contract).

Example:
    GET /agent/v1/runs/<run>/params/db_url?wait=30   Authorization: Bearer <token>
    → 200 {"key": "db.1:url", "value": "http://127.0.0.1:5480"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine.agent import AGENT_FILE
from engine.coordination.coordinator import Coordinator, token_hash
from engine.coordination.refusals import AgentError, BadRequest, Forbidden, Unauthorized
from engine.errors import StoreError
from engine.metrics import METRICS

MAX_REPORT_BYTES = 50 * 1024 * 1024
# How often a failing store is reported on the server's log.
TROUBLE_EVERY_S = 10.0
MAX_JSON_BYTES = 64 * 1024
PREFIX = "/agent/v1"
log = logging.getLogger(__name__)

Handler = Callable[[Request, str, str], Awaitable[Response]]


def json_answer(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


def refusal(err: AgentError) -> Response:
    body: dict[str, Any] = {"error": err.message}
    if err.status == 409:
        body = {"error": "aborted", "abort": err.message}
    return JSONResponse(body, err.status)


class AgentAPI:
    """The agent routes of one service home, over one coordinator."""

    def __init__(self, home: Path, coordinator: Coordinator) -> None:
        self.home = home
        self.coordinator = coordinator
        self._trouble_said = -TROUBLE_EVERY_S

    def routes(self) -> list[Route]:
        run = PREFIX + "/runs/{run_id}"
        guarded = self.guarded
        return [
            Route(PREFIX + "/agent.py", self.agent_file, methods=["GET"]),
            Route(run + "/recipe", guarded(self.recipe), methods=["GET"]),
            Route(run + "/params/{key:path}", guarded(self.get_param), methods=["GET"]),
            Route(run + "/params/{key:path}", guarded(self.set_param), methods=["PUT"]),
            Route(run + "/nodes/{node}/params/{key}", guarded(self.get_all), methods=["GET"]),
            Route(run + "/abort", guarded(self.abort), methods=["POST"]),
            Route(run + "/state", guarded(self.state), methods=["GET"]),
            Route(run + "/votes", guarded(self.vote), methods=["POST"]),
            Route(run + "/events", guarded(self.add_event), methods=["POST"]),
            Route(run + "/reports", guarded(self.upload_report), methods=["POST"]),
        ]

    async def agent_file(self, request: Request) -> Response:
        return FileResponse(AGENT_FILE, media_type="text/x-python")

    def guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The route with its caller authenticated, and refusals turned into answers."""

        what = handler.__name__

        async def route(request: Request) -> Response:
            METRICS.count("slipstream_agent_requests_total", route=what)
            try:
                run_id = request.path_params["run_id"]
                return await handler(request, run_id, await self.caller(request, run_id))
            except AgentError as err:
                return refusal(err)
            except StoreError as err:
                # A full disk, a database server gone: the agent retries, the run lives on.
                self.store_trouble(err)
                return JSONResponse({"error": str(err)}, 503, headers={"Retry-After": "1"})

        return route

    def store_trouble(self, err: StoreError) -> None:
        """Say once in a while (not once per agent request) that the store fails."""
        now = time.monotonic()
        if now - self._trouble_said >= TROUBLE_EVERY_S:
            self._trouble_said = now
            log.warning("slipstream: %s; agents' requests are answered 503 and retried", err)

    async def caller(self, request: Request, run_id: str) -> str:
        """The instance whose token the request carries (401 unknown, 403 another run's)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        owner = await self.coordinator.owner_async(token_hash(token.strip()))
        if owner is None:
            raise Unauthorized("unknown token")
        if owner[0] != run_id:
            raise Forbidden("token belongs to another run")
        return owner[1]

    # -- routes -----------------------------------------------------------------------

    async def recipe(self, request: Request, run_id: str, caller: str) -> Response:
        spec = (await self.coordinator.cache_async(run_id)).spec
        node, _, index = caller.partition(".")
        body = spec["nodes"][node]
        cloud = body["clouds"][(int(index) - 1) % len(body["clouds"])]
        return JSONResponse(
            {
                "instance": caller,
                "node": node,
                "index": int(index),
                "cloud_type": body["cloud_types"][cloud],
                "packages": body["packages"],
                "built": bool(body.get("built", {}).get(cloud)),
                "scripts": body["scripts"],
                # The scale round going on (or the last one): action, node, instances.
                "scaling": spec.get("scaling"),
            }
        )

    async def get_param(self, request: Request, run_id: str, caller: str) -> Response:
        key = request.path_params["key"]
        answer = await self.coordinator.get(
            run_id, caller, key, wait_of(request), ignore_abort_of(request)
        )
        if answer is None:
            return JSONResponse({"error": "not set"}, 408)
        return json_answer(answer)

    async def set_param(self, request: Request, run_id: str, caller: str) -> Response:
        value = (await json_object(request)).get("value")
        if not isinstance(value, str):
            raise BadRequest("`value` must be text")
        stored = await self.coordinator.put(
            run_id, caller, request.path_params["key"], value, ignore_abort_of(request)
        )
        return JSONResponse({"key": stored})

    async def get_all(self, request: Request, run_id: str, caller: str) -> Response:
        node, key = request.path_params["node"], request.path_params["key"]
        found, complete = await self.coordinator.get_all(
            run_id, caller, node, key, wait_of(request), ignore_abort_of(request)
        )
        body: dict[str, Any] = {"keys": [k for k, _ in found], "values": [v for _, v in found]}
        if not complete:
            return JSONResponse({"error": "not set", **body}, 408)
        return JSONResponse(body)

    async def abort(self, request: Request, run_id: str, caller: str) -> Response:
        body = await json_object(request)
        cancel = body.get("cancel", False)
        if not isinstance(cancel, bool):
            raise BadRequest("`cancel` must be true or false")
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise BadRequest("`message` must be text")
        raised = await self.coordinator.raise_abort(
            run_id, message or f"aborted by {caller}", cancel=cancel
        )
        return JSONResponse({"raised": raised})

    async def state(self, request: Request, run_id: str, caller: str) -> Response:
        after = request.query_params.get("after")
        return json_answer(await self.coordinator.wait_state(run_id, after, wait_of(request)))

    async def vote(self, request: Request, run_id: str, caller: str) -> Response:
        state = (await json_object(request)).get("state")
        await self.coordinator.vote(run_id, caller, state if isinstance(state, str) else "")
        return JSONResponse({"ok": True})

    async def add_event(self, request: Request, run_id: str, caller: str) -> Response:
        body = await json_object(request)
        message, level = body.get("message", ""), body.get("level", "info")
        if not isinstance(message, str) or not isinstance(level, str):
            raise BadRequest("`message` and `level` must be text")
        await self.coordinator.post_event(run_id, caller, message, level)
        return JSONResponse({"ok": True})

    async def upload_report(self, request: Request, run_id: str, caller: str) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_REPORT_BYTES:
            raise BadRequest(f"report is over {MAX_REPORT_BYTES} bytes")
        target = self.home / "runs" / run_id / "reports" / f"{caller}.tar.gz"
        size = await stream_to_file(request, target, MAX_REPORT_BYTES)
        await self.coordinator.record_report(run_id, caller, str(target), size)
        return JSONResponse({"ok": True, "size": size})


class HotRoutes:
    """The agent API's routes answered straight from the server, without Starlette's
    middleware and router (thousands of agents call them at once: that machinery was
    about a third of the server's time per request), with the same Request, handlers and
    responses. A request is taken only when a route matches its method and path exactly
    as Starlette's router would have chosen it; anything else (other methods, HEAD, paths
    no route takes) goes on to the full app, which answers as it always did.

    Example:
        >>> hot = HotRoutes([])
        >>> hot.find({"type": "http", "method": "GET", "path": "/healthz"}) is None
        True
    """

    RUNS = PREFIX + "/runs/"

    def __init__(self, routes: list[Route]) -> None:
        # (method, first path segment after the run id) → routes, in the router's order.
        self._by_head: dict[tuple[str, str], list[Route]] = {}
        for route in routes:
            if not route.path.startswith(self.RUNS):
                continue
            head = route.path.removeprefix(self.RUNS + "{run_id}/").split("/", 1)[0]
            for method in route.methods or ():
                if method != "HEAD":
                    self._by_head.setdefault((method, head), []).append(route)

    def find(self, scope: Scope) -> tuple[Route, dict[str, Any]] | None:
        """The route taking this request and its path parameters, or None."""
        path = get_route_path(scope)
        if not path.startswith(self.RUNS):
            return None
        rest = path[len(self.RUNS) :]
        head = rest[rest.find("/") + 1 :].split("/", 1)[0]
        for route in self._by_head.get((scope["method"], head), ()):
            match = route.path_regex.match(path)
            if match:
                params = {
                    key: route.param_convertors[key].convert(value)
                    for key, value in match.groupdict().items()
                }
                return route, params
        return None

    async def serve(
        self, found: tuple[Route, dict[str, Any]], scope: Scope, receive: Receive, send: Send
    ) -> None:
        route, params = found
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception:
            # As Starlette's error middleware: a plain 500, and the error to the server's log.
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        await response(scope, receive, send)


def wait_of(request: Request) -> float:
    try:
        wait = float(request.query_params.get("wait", "0"))
    except ValueError as exc:
        raise BadRequest("wait must be a number of seconds") from exc
    if not math.isfinite(wait):
        raise BadRequest("wait must be a finite number of seconds")
    return wait


def ignore_abort_of(request: Request) -> bool:
    """``?ignore_abort=true``: read or write past the abort fence."""
    text = request.query_params.get("ignore_abort", "false")
    if text not in ("true", "false"):
        raise BadRequest("ignore_abort must be true or false")
    return text == "true"


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body (at most 64 KiB); BadRequest otherwise."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise BadRequest(f"body is over {MAX_JSON_BYTES} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


async def stream_to_file(request: Request, target: Path, cap: int) -> int:
    """Write the body to ``target`` (0600, atomically) as it arrives, refusing it past
    ``cap`` bytes: a report never sits in memory."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise BadRequest(f"report is over {cap} bytes")
                handle.write(chunk)
            handle.flush()
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return size
