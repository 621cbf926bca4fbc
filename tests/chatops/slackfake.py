"""A fake Slack on loopback, for tests: the Web API (``POST /api/<method>``) and
``response_url`` endpoints (``POST /response/<id>``) the app talks to, speaking Slack's
wire format and checking what real Slack checks (the bot token, known methods, required
fields, Block Kit's shape and limits); and signed requests *from* Slack to the app, signed
with slack_sdk's own signature code.

Every call is recorded; a call Slack would refuse is answered as Slack answers it and kept
in :attr:`FakeSlack.problems`, which tests expect empty. Tests can make Slack rate-limit a
method (HTTP 429 with ``Retry-After``) or be down (HTTP 503).

Example (not run: it listens)::

        with FakeSlack("xoxb-test") as slack:
            os.environ["SLACK_API_URL"] = slack.api_url
            ...
            slack.wait_for(lambda: slack.posts("C1"))
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

T = TypeVar("T")

# method → fields it requires (one of a tuple is enough)
METHODS: dict[str, tuple[tuple[str, ...], ...]] = {
    "auth.test": (),
    "chat.postMessage": (("channel",), ("text", "blocks")),
    "chat.update": (("channel",), ("ts",), ("text", "blocks")),
    "chat.delete": (("channel",), ("ts",)),
    "chat.postEphemeral": (("channel",), ("user",), ("text", "blocks")),
    "views.open": (("trigger_id",), ("view",)),
    "users.info": (("user",),),
}
BLOCK_TYPES = {"section", "context", "actions", "divider", "header"}


@dataclass
class Call:
    """One Web API call as received."""

    method: str
    fields: dict[str, Any]
    at: float
    status: int = 200
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


def text_problems(obj: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: expected a text object of type {'/'.join(kinds)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: empty text"]
    if len(text) > limit:
        return [f"{where}: text over {limit} characters"]
    return []


def block_problems(blocks: Any, limit: int) -> list[str]:
    """What Slack would answer ``invalid_blocks`` for (the parts of Block Kit we use)."""
    if not isinstance(blocks, list) or not blocks:
        return ["blocks: expected a non-empty list"]
    problems = [] if len(blocks) <= limit else [f"blocks: more than {limit}"]
    ids: set[str] = set()
    actions: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            problems.append(f"{where}: unknown block type {kind!r}")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255 or block_id in ids:
                problems.append(f"{where}: bad or repeated block_id")
            ids.add(str(block_id))
        if kind == "section":
            problems += text_problems(block.get("text"), where, 3000, ("mrkdwn", "plain_text"))
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}: context needs 1 to 10 elements")
            else:
                for j, element in enumerate(elements):
                    problems += text_problems(
                        element, f"{where}.elements[{j}]", 3000, ("mrkdwn", "plain_text")
                    )
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                problems.append(f"{where}: actions needs 1 to 25 elements")
                continue
            for j, button in enumerate(elements):
                at = f"{where}.elements[{j}]"
                if button.get("type") != "button":
                    problems.append(f"{at}: only buttons are expected")
                    continue
                problems += text_problems(button.get("text"), at, 75, ("plain_text",))
                action_id = button.get("action_id")
                if not isinstance(action_id, str) or len(action_id) > 255 or action_id in actions:
                    problems.append(f"{at}: bad or repeated action_id")
                actions.add(str(action_id))
                if len(str(button.get("value", ""))) > 2000:
                    problems.append(f"{at}: value over 2000 characters")
                if button.get("style") not in (None, "primary", "danger"):
                    problems.append(f"{at}: bad style")
    return problems


def view_problems(view: Any) -> list[str]:
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view: expected a modal"]
    problems = text_problems(view.get("title"), "view.title", 24, ("plain_text",))
    for key in ("submit", "close"):
        if key in view:
            problems += text_problems(view[key], f"view.{key}", 24, ("plain_text",))
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("view.private_metadata: over 3000 characters")
    if len(str(view.get("callback_id", ""))) > 255:
        problems.append("view.callback_id: over 255 characters")
    return problems + block_problems(view.get("blocks"), 100)


class FakeSlack:
    """Slack's Web API and response URLs on a loopback port (see the module docstring)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[Message] = []
        self.problems: list[str] = []
        self.users: dict[str, dict[str, Any]] = {}  # user id → users.info's "user"
        self.triggers: set[str] = set()
        self.rate_limited: dict[str, tuple[int, int]] = {}  # method → (times, retry_after)
        self.down = False
        self._clock = itertools.count(1)
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = self.url + "/api/"

    def __enter__(self) -> FakeSlack:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests look at ------------------------------------------------------------

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def trigger(self) -> str:
        """A fresh trigger_id, as Slack puts in an interaction payload."""
        trigger = f"{next(self._clock)}.trigger"
        self.triggers.add(trigger)
        return trigger

    def wait_for(self, found: Callable[[], T], timeout: float = 30.0) -> T:
        """``found()``'s first truthy value, waiting for calls to arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = found()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls: {[c.method for c in self.calls]}")
                self._lock.wait(min(left, 0.2))

    def answers(self, name: str) -> list[dict[str, Any]]:
        """What the app posted to the response URL ``name``."""
        return [doc for n, doc in self.responses if n == name]

    def parents(self, channel: str) -> list[Message]:
        return [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts is None and not m.deleted
        ]

    def thread(self, channel: str, ts: str) -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts == ts]

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def message(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    # -- the server --------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                kind = self.headers.get("Content-Type", "")
                fields: dict[str, Any] = dict(parse_qsl(parts.query))
                if raw and kind.startswith("application/json"):
                    fields.update(json.loads(raw))
                elif raw:
                    fields.update(parse_qsl(raw))
                if parts.path.startswith("/response/"):
                    status, body = fake._response(parts.path.rpartition("/")[2], fields)
                    self._send(status, body, "text/plain")
                    return
                method = parts.path.removeprefix("/api/")
                status, answer, headers = fake._api(
                    method, self.headers.get("Authorization", ""), fields
                )
                self._send(status, json.dumps(answer), "application/json", headers)

            def _send(
                self, status: int, body: str, kind: str, headers: dict[str, str] | None = None
            ) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _response(self, name: str, doc: dict[str, Any]) -> tuple[int, str]:
        problems = []
        if not doc.get("text") and not doc.get("blocks"):
            problems.append(f"response_url {name}: neither text nor blocks")
        if doc.get("response_type") not in (None, "ephemeral", "in_channel"):
            problems.append(f"response_url {name}: bad response_type")
        if doc.get("blocks"):
            problems += block_problems(doc["blocks"], 50)
        with self._lock:
            self.problems += problems
            self.responses.append((name, doc))
            self._lock.notify_all()
        return (400, "invalid_blocks") if problems else (200, "ok")

    def _api(
        self, method: str, auth: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            call = Call(method, fields, time.monotonic())
            self.calls.append(call)
            status, answer, headers = self._answer(method, auth, fields)
            call.status, call.answer = status, answer
            self._lock.notify_all()
            return status, answer, headers

    def _answer(
        self, method: str, auth: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.down:
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        times, retry_after = self.rate_limited.get(method, (0, 0))
        if times > 0:
            self.rate_limited[method] = (times - 1, retry_after)
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        if auth != f"Bearer {self.token}":
            self.problems.append(f"{method}: bad token {auth!r}")
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if method not in METHODS:
            self.problems.append(f"unknown method {method}")
            return 200, {"ok": False, "error": "unknown_method"}, {}
        for one_of in METHODS[method]:
            if not any(fields.get(name) for name in one_of):
                self.problems.append(f"{method}: missing {' or '.join(one_of)}")
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
        blocks = fields.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if blocks is not None:
            found = block_problems(blocks, 50)
            if found:
                self.problems += [f"{method}: {p}" for p in found]
                return 200, {"ok": False, "error": "invalid_blocks"}, {}
        return self._act(method, fields, blocks or [])

    def _act(
        self, method: str, fields: dict[str, Any], blocks: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        ok: dict[str, Any] = {"ok": True}
        channel = str(fields.get("channel", ""))
        if method == "auth.test":
            return 200, {**ok, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"}, {}
        if method == "chat.postMessage":
            if channel.startswith("CNOPE"):
                return 200, {"ok": False, "error": "not_in_channel"}, {}
            n = next(self._clock)
            ts = f"{1700000000 + n}.{n:06d}"
            thread = fields.get("thread_ts")
            if thread is not None and self.message(channel, str(thread)) is None:
                self.problems.append(f"chat.postMessage: thread_ts {thread} is no message")
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            self.messages.append(Message(channel, ts, str(fields.get("text", "")), blocks, thread))
            return (
                200,
                {**ok, "channel": channel, "ts": ts, "message": {"text": fields.get("text")}},
                {},
            )
        if method in ("chat.update", "chat.delete"):
            found = self.message(channel, str(fields.get("ts")))
            if found is None or found.deleted:
                self.problems.append(f"{method}: no message {channel}/{fields.get('ts')}")
                return 200, {"ok": False, "error": "message_not_found"}, {}
            if method == "chat.delete":
                found.deleted = True
            else:
                found.edits.append({"text": fields.get("text"), "blocks": blocks})
                found.text, found.blocks = str(fields.get("text", "")), blocks
            return 200, {**ok, "channel": channel, "ts": found.ts}, {}
        if method == "chat.postEphemeral":
            return 200, {**ok, "message_ts": f"{time.time():.6f}"}, {}
        if method == "views.open":
            view = fields["view"]
            view = json.loads(view) if isinstance(view, str) else view
            found = view_problems(view)
            if found:
                self.problems += [f"views.open: {p}" for p in found]
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            if fields["trigger_id"] not in self.triggers:
                self.problems.append("views.open: unknown trigger_id")
                return 200, {"ok": False, "error": "invalid_trigger_id"}, {}
            self.triggers.discard(fields["trigger_id"])  # a trigger works once
            return 200, {**ok, "view": {**view, "id": f"V{next(self._clock)}"}}, {}
        user = self.users.get(str(fields.get("user")))
        if user is None:
            return 200, {"ok": False, "error": "user_not_found"}, {}
        return 200, {**ok, "user": user}, {}


# -- requests from Slack -------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def signed_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``, signed with slack_sdk's signature code."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def send(url: str, body: str, headers: dict[str, str], timeout: float = 30.0) -> Answer:
    """POST ``body`` over real HTTP; the answer and how long it took."""
    request = urllib.request.Request(url, data=body.encode("utf-8"), headers=headers, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
            return Answer(response.status, text, time.monotonic() - started)
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read().decode("utf-8"), time.monotonic() - started)


def command_body(
    text: str, *, team: str, user: str, channel: str, response_url: str, trigger_id: str = "1.t"
) -> str:
    """A ``/slipstream`` slash command's form body, as Slack sends it."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": team,
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/slipstream",
            "text": text,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def button_body(
    action_id: str,
    run_id: str,
    *,
    team: str,
    user: str,
    channel: str,
    message_ts: str,
    trigger_id: str,
    response_url: str,
) -> str:
    """A ``block_actions`` payload: a button of a message pressed."""
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "trigger_id": trigger_id,
        "channel": {"id": channel, "name": "ops"},
        "message": {"ts": message_ts, "type": "message"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"approval:{run_id}",
                "value": run_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def submission_body(view: dict[str, Any], *, team: str, user: str) -> str:
    """A ``view_submission`` payload: the modal ``view`` (as opened) submitted."""
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "deprecated-verification-token",
        "trigger_id": f"{time.time():.6f}.trigger",
        "view": {**view, "state": {"values": {}}, "team_id": team, "app_id": "A1"},
    }
    return urlencode({"payload": json.dumps(payload)})
