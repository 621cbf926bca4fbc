"""The Slack Web API calls the app makes, over slack_sdk's ``WebClient``, with Slack's
failures sorted into the two that matter to a caller:

- :class:`SlackUnavailable`: try again later (HTTP 429, whose ``Retry-After`` it carries;
  a 5xx; no answer at all);
- :class:`SlackRefused`: Slack answered ``ok: false`` (``channel_not_found``,
  ``invalid_blocks``…); the same call would be refused again.

A *patient* client (for listeners answering one person) waits out a 429 itself, a couple of
times; the run watcher's client is not patient: it pauses its own loop instead.

Example (not run: it needs Slack)::

        slack = SlackClient("xoxb-…", "https://slack.com/api/")
        ts = slack.post("C123", Message("hello"))
        slack.update("C123", ts, Message("hello again"))
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from chatops.blocks import Message

log = logging.getLogger(__name__)
#: How long to wait after a 5xx or no answer before trying again.
OUTAGE_PAUSE_S = 5.0


class SlackUnavailable(Exception):
    """Slack cannot take the call now; try again in ``retry_after`` seconds."""

    def __init__(self, why: str, retry_after: float) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class SlackRefused(Exception):
    """Slack answered ``ok: false`` with ``error``; the same call would be refused again."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


class SlackClient:
    """The calls chatops makes, with errors sorted (see the module's docstring)."""

    def __init__(
        self, token: str, base_url: str, *, patient: bool = True, timeout: int = 10
    ) -> None:
        self.web = WebClient(token=token, base_url=base_url, timeout=timeout)
        if patient:
            self.web.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))

    def _call(self, method: str, **fields: Any) -> SlackResponse:
        try:
            if method == "users.info":
                return self.web.api_call(method, http_verb="GET", params=fields)
            return self.web.api_call(
                method, json={k: v for k, v in fields.items() if v is not None}
            )
        except SlackApiError as err:
            status = err.response.status_code
            if status == 429:
                after = float(err.response.headers.get("Retry-After", "1") or 1)
                raise SlackUnavailable(f"{method}: rate limited", after) from err
            if status != 200:
                raise SlackUnavailable(f"{method}: HTTP {status}", OUTAGE_PAUSE_S) from err
            raise SlackRefused(method, str(err.response.get("error", "unknown"))) from err
        except OSError as err:  # no answer: refused connection, timeout, DNS
            raise SlackUnavailable(f"{method}: {err}", OUTAGE_PAUSE_S) from err

    def post(self, channel: str, message: Message, thread_ts: str | None = None) -> str:
        """Post in a channel (in a thread with ``thread_ts``); the new message's ``ts``."""
        got = self._call(
            "chat.postMessage", channel=channel, thread_ts=thread_ts, **message.payload()
        )
        return str(got["ts"])

    def update(self, channel: str, ts: str, message: Message) -> None:
        """Replace the message ``ts`` in place."""
        self._call("chat.update", channel=channel, ts=ts, **message.payload())

    def delete(self, channel: str, ts: str) -> None:
        """Remove the app's own message ``ts``."""
        self._call("chat.delete", channel=channel, ts=ts)

    def ephemeral(self, channel: str, user: str, message: Message) -> None:
        """A message only ``user`` sees, in ``channel``."""
        self._call("chat.postEphemeral", channel=channel, user=user, **message.payload())

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """Open a modal for the person whose interaction gave ``trigger_id`` (3 s)."""
        self._call("views.open", trigger_id=trigger_id, view=view)

    def user_email(self, user: str) -> str | None:
        """The e-mail address of a user's profile; None when Slack has none to give (a
        bot, a refusal such as ``missing_scope``: the app needs ``users:read.email``)."""
        try:
            got = self._call("users.info", user=user)
        except SlackRefused as err:
            log.warning("users.info %s refused (%s): no e-mail address to match", user, err.error)
            return None
        profile = (got.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        return str(email) if email else None
