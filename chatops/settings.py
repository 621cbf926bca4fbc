"""How the Slack front door is configured: from the environment only (secrets never sit in
``serve.yaml``), under Bolt's usual names.

- ``SLACK_SIGNING_SECRET``: the app's signing secret (Basic Information → App Credentials);
- ``SLACK_BOT_TOKEN``: its bot token, ``xoxb-…`` (OAuth & Permissions);
- ``SLACK_API_URL``: the Web API's base URL (default ``https://slack.com/api/``; tests
  point it at a fake on loopback).

The Slack endpoint is served only when both secrets are set. This module imports nothing of
Slack, so the resident service can ask whether Slack is on for free.

Example:
    >>> SlackSettings.from_env({"SLACK_SIGNING_SECRET": "s"}) is None
    True
    >>> SlackSettings.missing({"SLACK_SIGNING_SECRET": "s"})
    ['SLACK_BOT_TOKEN']
    >>> SlackSettings.from_env({"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"}).api_url
    'https://slack.com/api/'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_API_URL = "https://slack.com/api/"
REQUIRED = ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")


@dataclass(frozen=True)
class SlackSettings:
    """The Slack front door's secrets and the Web API's address (see the module)."""

    signing_secret: str = field(repr=False)
    bot_token: str = field(repr=False)
    api_url: str = DEFAULT_API_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SlackSettings | None:
        """The settings, or None when Slack is not configured (a secret is missing)."""
        env = os.environ if environ is None else environ
        if cls.missing(env):
            return None
        url = env.get("SLACK_API_URL") or DEFAULT_API_URL
        return cls(env["SLACK_SIGNING_SECRET"], env["SLACK_BOT_TOKEN"], url.rstrip("/") + "/")

    @staticmethod
    def missing(environ: Mapping[str, str] | None = None) -> list[str]:
        """The variables still needed to turn the Slack front door on."""
        env = os.environ if environ is None else environ
        return [name for name in REQUIRED if not env.get(name)]
