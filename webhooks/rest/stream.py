"""A run's events, live: ``GET /api/v1/runs/{run_id}/events/stream`` (Server-Sent Events).

Served natively on the server's event loop (a waiting stream costs no thread), with the
same bearer tokens and rights as the other routes. Each event goes out as ``id: N`` and
``data: {"id", "at", "kind", "message", "data"}``; a client that reconnects sends
``Last-Event-ID`` (or ``?after=N``) and misses nothing. The stream reads the store: at
once, then again whenever the run changes state (the coordinator's hub wakes it) and at
least every :data:`POLL_S` seconds; a comment line every :data:`KEEP_ALIVE_S` keeps idle
connections open. It ends with ``event: end`` and ``data: {"id", "state", "abort"}`` once
the run is over (``until=over``, the default) or stopped moving (``until=settled``: Ready,
waiting for an approval, or over, with no job of its running or queued).

Example:
    $ curl -N -H "Authorization: Bearer $SLIPSTREAM_TOKEN" \\
          $SLIPSTREAM_URL/api/v1/runs/3f2a9c1e0b7d4a55/events/stream
    id: 1
    data: {"at": 1712.5, "data": {}, "id": 1, "kind": "created", "message": "run of …"}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from engine.access import Actor
from engine.coordination.coordinator import STATE_WATCH
from engine.coordination.hub import TIMED_OUT
from engine.errors import NotAuthenticated
from engine.service import OVER, Service
from engine.store.runstore import Event, RunRecord
from webhooks.rest.errors import CHALLENGE, classify, error_body

log = logging.getLogger(__name__)

PATH = "/api/v1/runs/{run_id}/events/stream"
POLL_S = 0.5
KEEP_ALIVE_S = 15.0
PAGE = 500
UNTIL = ("over", "settled")
MAX_ID = 10**18 - 1


def sse(event: Event) -> str:
    """One event in the stream's format.

    >>> print(sse(Event(7, "r", 1.5, "state", "run entered Ready", {"state": "Ready"})), end="")
    id: 7
    data: {"at": 1.5, "data": {"state": "Ready"}, "id": 7, "kind": "state", "message": "run entered Ready"}
    <BLANKLINE>
    """  # noqa: E501
    return f"id: {event.id}\ndata: {json.dumps(event.to_json(), sort_keys=True)}\n\n"


class EventStream:
    """The stream route: authenticates, checks the right to view the run, then streams."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def handle(self, request: Request) -> Response:
        try:
            actor = await run_in_threadpool(self._authenticate, request)
            run_id = request.path_params["run_id"]
            await run_in_threadpool(self.service.run_for, actor, run_id)
        except Exception as err:
            status, body = classify(err)
            if status == 500:
                log.exception("event stream of %s", request.url.path)
            return JSONResponse(body, status, headers=CHALLENGE if status == 401 else None)
        after, until = self._position(request)
        if after is None or until is None:
            message = "`after` and `Last-Event-ID` take an event id; `until`: over or settled"
            return JSONResponse(error_body("invalid", message), 400)
        return StreamingResponse(
            self._events(request, run_id, after, until),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _authenticate(self, request: Request) -> Actor:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("missing bearer token")
        return self.service.authenticate(token.strip())

    @staticmethod
    def _position(request: Request) -> tuple[int | None, str | None]:
        """(the event id to start after, until what); None for what is malformed."""
        text = request.headers.get("Last-Event-ID") or request.query_params.get("after", "0")
        after = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
        until = request.query_params.get("until", "over")
        return after, until if until in UNTIL else None

    def _read(self, run_id: str, after: int, until: str) -> tuple[list[Event], RunRecord, bool]:
        """The next events, the run, and whether the stream may end after these events
        (decided before reading them, so none written meanwhile is missed)."""
        run = self.service.store.get_run(run_id)
        assert run is not None
        done = self._done(run, until)
        return self.service.store.events(run_id, after, PAGE), run, done

    def _done(self, run: RunRecord, until: str) -> bool:
        jobs = self.service.jobs
        busy = jobs is not None and (run.id in jobs.running() or bool(jobs.pending(run.id)))
        if busy:
            return False
        if until == "settled":
            return run.state in (*OVER, "Ready") or run.approval == "pending"
        return run.state in OVER

    async def _events(
        self, request: Request, run_id: str, after: int, until: str
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        yield "retry: 2000\n\n"
        while True:
            events, run, done = await run_in_threadpool(self._read, run_id, after, until)
            for event in events:
                yield sse(event)
                after = event.id
            if events:
                quiet_since = loop.time()
            if len(events) == PAGE:
                continue
            if done:
                end = {"id": run.id, "state": run.state, "abort": run.abort_message}
                yield f"event: end\ndata: {json.dumps(end, sort_keys=True)}\n\n"
                return
            if loop.time() - quiet_since >= KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = loop.time()
            if await request.is_disconnected():
                return
            await self._wait(run_id)

    async def _wait(self, run_id: str) -> None:
        """Until the run changes state, or POLL_S (the hub answers at once when closing)."""
        started = asyncio.get_running_loop().time()
        woken = await self.service.hub.wait(run_id, STATE_WATCH, POLL_S)
        left = POLL_S - (asyncio.get_running_loop().time() - started)
        if woken is TIMED_OUT and left > 0:
            await asyncio.sleep(left)


#: One message of the stream (before OpenAPI 3.2, ``schema`` describes each message).
MESSAGE = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]*$"},
        "event": {"type": "string", "enum": ["message", "end"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "message: an Event (#/components/schemas/Event); "
            "end: {id, state, abort} of the run",
        },
        "retry": {"type": "integer"},
    },
}


def stream_routes(service: Service) -> list[BaseRoute]:
    """The REST API's live streams, served natively on the event loop."""
    return [Route(PATH, EventStream(service).handle, methods=["GET"])]


def document_streams(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the stream route to the OpenAPI document (its answers use the components the
    other routes define: ``Event`` and ``Error``)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    spec["paths"][PATH] = {
        "get": {
            "tags": ["Runs"],
            "summary": "A run's events, live (Server-Sent Events)",
            "description": (__doc__ or "").split("Example:")[0].strip(),
            "security": [{"BearerAuth": []}],
            "parameters": [
                {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID, "default": 0},
                    "description": "send the events after this id",
                },
                {
                    "name": "until",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(UNTIL), "default": "over"},
                },
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "description": "on a reconnection: the last id received (wins over after)",
                },
            ],
            "responses": {
                "200": {
                    "description": "`id: N` and `data: <Event>` per event, then `event: end`",
                    "content": {"text/event-stream": {"schema": MESSAGE}},
                },
                **{
                    str(code): {"description": why, "content": error}
                    for code, why in (
                        (400, "Malformed after, Last-Event-ID or until"),
                        (401, "Authentication error"),
                        (403, "Missing right"),
                        (404, "Not found"),
                    )
                },
            },
        }
    }
    return spec
