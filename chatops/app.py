"""The Slack app: Bolt listeners over :class:`~chatops.handlers.SlackHandlers`, served as a
Flask app (Bolt's Flask adapter) that the HTTP server mounts at ``/slack``, so Slack's
request URL is ``https://HOST/slack/events`` for commands and interactivity alike.

Bolt checks every request's signature (v0 HMAC of the timestamp and raw body with the
signing secret) and refuses one older than five minutes; :class:`ReplayGuard` then refuses
one seen before. Listeners *ack* first, in the request (Slack wants an answer within three
seconds), then hand the parsed payload to a small executor that does the work in the
background. (Bolt's own lazy listeners would do the same, but deep-copy the whole request
for each command: a fifth of a command's cost under load.) No Slack call is made on the
way to the answer: authorization is the bot token itself, not an ``auth.test``.

Example (not run: it serves)::

        door = SlackFrontDoor(service, SlackSettings.from_env(), lambda: [root], home)
        app = create_app(home, coordinator, service, slack=door.wsgi)
        door.start()    # the run watcher
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def first(self, signature: str, now: float | None = None) -> bool:
        """True the first time ``signature`` is shown (within the window)."""
        now = time.time() if now is None else now
        with self._lock:
            while self._order and self._order[0][0] < now - self.window_s:
                self._seen.discard(self._order.popleft()[1])
            if signature in self._seen:
                return False
            self._seen.add(signature)
            self._order.append((now, signature))
            return True

    def middleware(
        self, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        signature = req.headers.get("x-slack-signature", [""])[0]
        if not self.first(signature):
            return BoltResponse(status=401, body={"error": "replayed request"})
        return next()


class AcksFirst:
    """Background work waits while requests are being answered (at most ``max_wait_s``):
    under a burst of commands, every ack goes out before the work they started competes
    for the interpreter; the work itself is not in a hurry (a response URL is good for
    half an hour).

    Example:
        >>> gate = AcksFirst()
        >>> with gate.answering():
        ...     gate.wait_idle(timeout_s=0.01)
        False
        >>> gate.wait_idle()
        True
    """

    def __init__(self, max_wait_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self._answering = 0
        self._idle = threading.Condition()

    @contextmanager
    def answering(self) -> Iterator[None]:
        with self._idle:
            self._answering += 1
        try:
            yield
        finally:
            with self._idle:
                self._answering -= 1
                if self._answering == 0:
                    self._idle.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no request is being answered; False if that took too long."""
        with self._idle:
            wait = self.max_wait_s if timeout_s is None else timeout_s
            return self._idle.wait_for(lambda: self._answering == 0, timeout=wait)


class _TokenSkipped(logging.Filter):
    """Bolt reads ``SLACK_BOT_TOKEN`` itself and warns, at every start, that the explicit
    authorization below wins over it; that is the intent, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be ignored" not in record.getMessage()


log = logging.getLogger(__name__)
BOLT_LOG = logging.getLogger("chatops.bolt")
BOLT_LOG.addFilter(_TokenSkipped())


def bolt_app(
    settings: SlackSettings,
    handlers: SlackHandlers,
    executor: ThreadPoolExecutor,
    gate: AcksFirst,
) -> App:
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
        # Commands and interactivity only: no Events API, so none of its middleware.
        ignoring_self_events_enabled=False,
        ignoring_self_assistant_message_events_enabled=False,
        url_verification_enabled=False,
        attaching_function_token_enabled=False,
        attaching_conversation_kwargs_enabled=False,
        name="slipstream",
        logger=BOLT_LOG,
    )

    def reply(respond: Respond) -> Callable[[Message], None]:
        def send(message: Message) -> None:
            respond(response_type="ephemeral", **message.payload())

        return send

    def later(work: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            gate.wait_idle()
            try:
                work(*args)
            except Exception:  # one person's command; the next ones must still run
                log.exception("chat command failed")

        executor.submit(run)

    def on_command(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        answer = handlers.ack_command(str(body.get("text", "")))
        if answer is not None:
            ack(response_type="ephemeral", **answer.payload())
            return
        ack()
        later(handlers.command, body, reply(respond))

    def on_button(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        later(handlers.button, body)

    def on_submission(ack: Ack, body: dict[str, Any]) -> None:
        ack()  # closes the dialog
        later(handlers.decision, body)

    app.command(COMMAND)(on_command)
    app.action(APPROVE)(on_button)
    app.action(CANCEL)(on_button)
    app.view(DECIDE)(on_submission)
    return app


def wsgi_app(app: App, gate: AcksFirst) -> Flask:
    """Bolt behind its Flask adapter: ``POST /events`` (mounted at ``/slack``)."""
    flask = Flask("slipstream-slack")
    flask.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    handler = SlackRequestHandler(app)

    @flask.post("/events")
    def events() -> ResponseReturnValue:
        with gate.answering():
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
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack")
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
        gate = AcksFirst()
        self.bolt = bolt_app(settings, handlers, self.executor, gate)
        self.wsgi = wsgi_app(self.bolt, gate)

    def start(self) -> None:
        """Start the run watcher (the server serves the WSGI app)."""
        self.watcher.start()

    def stop(self) -> None:
        """Stop the watcher; background work not started yet is dropped."""
        self.watcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
