"""The Slack app: Bolt listeners over :class:`~chatops.handlers.SlackHandlers`, served as a
Flask app (Bolt's Flask adapter) that the HTTP server mounts at ``/slack``, so Slack's
request URL is ``https://HOST/slack/events`` for commands and interactivity alike.

Bolt checks every request's signature (v0 HMAC of the timestamp and raw body with the
signing secret) and refuses one older than five minutes; :class:`ReplayGuard` then refuses
one seen before. Listeners *ack* first, in the request (Slack wants an answer within three
seconds), and do the work lazily on Bolt's executor. No Slack call is made on the way to
the answer: authorization is the bot token itself, not an ``auth.test``.

Example (not run: it serves)::

        door = SlackFrontDoor(service, SlackSettings.from_env(), lambda: [root], home)
        app = create_app(home, coordinator, service, slack=door.wsgi)
        door.start()    # the run watcher
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue
from slack_bolt import Ack, App, BoltRequest, BoltResponse, Respond
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult

from chatops.blocks import APPROVE, CANCEL, DECIDE, Message
from chatops.commands import ChatCommands
from chatops.handlers import SlackHandlers
from chatops.identity import SlackIdentities
from chatops.settings import SlackSettings
from chatops.slack import SlackClient
from chatops.watcher import RunWatcher
from engine.service import Service

COMMAND = "/slipstream"
#: Bolt's window for a request's timestamp; a signature is remembered as long.
WINDOW_S = 300.0
MAX_BODY = 64 * 1024


class ReplayGuard:
    """Refuses a request whose signature was seen in the last five minutes (an older one
    fails Bolt's timestamp check already). One process remembers; several servers behind a
    load balancer would each remember their own.

    Example:
        >>> guard = ReplayGuard()
        >>> guard.first("v0=ab", now=0.0), guard.first("v0=ab", now=1.0)
        (True, False)
    """

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, signature: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            if len(self._seen) > 10_000 or (
                self._seen and min(self._seen.values()) < now - self.window_s
            ):
                self._seen = {s: t for s, t in self._seen.items() if t >= now - self.window_s}
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True

    def middleware(
        self, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        signature = req.headers.get("x-slack-signature", [""])[0]
        if not self.first(signature):
            return BoltResponse(status=401, body={"error": "replayed request"})
        return next()


class _TokenSkipped(logging.Filter):
    """Bolt reads ``SLACK_BOT_TOKEN`` itself and warns, at every start, that the explicit
    authorization below wins over it; that is the intent, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be ignored" not in record.getMessage()


BOLT_LOG = logging.getLogger("chatops.bolt")
BOLT_LOG.addFilter(_TokenSkipped())


def bolt_app(settings: SlackSettings, handlers: SlackHandlers, executor: ThreadPoolExecutor) -> App:
    """The Bolt app: the slash command, the two buttons and the confirmation dialog."""
    token = settings.bot_token

    def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token
        )

    app = App(
        signing_secret=settings.signing_secret,
        authorize=authorize,
        before_authorize=ReplayGuard().middleware,
        process_before_response=True,
        listener_executor=executor,
        name="slipstream",
        logger=BOLT_LOG,
    )

    def reply(respond: Respond) -> Callable[[Message], None]:
        def send(message: Message) -> None:
            respond(response_type="ephemeral", **message.payload())

        return send

    def ack_command(ack: Ack, body: dict[str, Any]) -> None:
        answer = handlers.ack_command(str(body.get("text", "")))
        if answer is None:
            ack()
        else:
            ack(response_type="ephemeral", **answer.payload())

    def run_command(body: dict[str, Any], respond: Respond) -> None:
        handlers.command(body, reply(respond))

    def ack_only(ack: Ack) -> None:
        ack()

    def press(body: dict[str, Any]) -> None:
        handlers.button(body)

    def decide(body: dict[str, Any]) -> None:
        handlers.decision(body)

    app.command(COMMAND)(ack=ack_command, lazy=[run_command])
    app.action(APPROVE)(ack=ack_only, lazy=[press])
    app.action(CANCEL)(ack=ack_only, lazy=[press])
    app.view(DECIDE)(ack=ack_only, lazy=[decide])
    return app


def wsgi_app(app: App) -> Flask:
    """Bolt behind its Flask adapter: ``POST /events`` (mounted at ``/slack``)."""
    flask = Flask("slipstream-slack")
    flask.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    handler = SlackRequestHandler(app)

    @flask.post("/events")
    def events() -> ResponseReturnValue:
        return handler.handle(request)

    return flask


class SlackFrontDoor:
    """The Slack front door of a resident service: its WSGI app and its run watcher."""

    def __init__(
        self,
        service: Service,
        settings: SlackSettings,
        places: Callable[[], Sequence[Path]],
        home: Path,
    ) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="slack")
        slack = SlackClient(settings.bot_token, settings.api_url)
        self.watcher = RunWatcher(
            service, SlackClient(settings.bot_token, settings.api_url, patient=False), home
        )
        handlers = SlackHandlers(
            ChatCommands(service, places),
            SlackIdentities(service, slack.user_email),
            slack,
            service,
            self.watcher.wake,
        )
        self.bolt = bolt_app(settings, handlers, self.executor)
        self.wsgi = wsgi_app(self.bolt)

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
