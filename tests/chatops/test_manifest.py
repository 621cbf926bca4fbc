"""The Slack app manifest shipped in chatops/ matches what the app does."""

from __future__ import annotations

from pathlib import Path

import yaml

from chatops.app import COMMAND

MANIFEST = Path(__file__).resolve().parents[2] / "chatops" / "manifest.yaml"


def test_the_manifest_declares_the_command_the_endpoint_and_the_scopes_used() -> None:
    doc = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    (command,) = doc["features"]["slash_commands"]
    assert command["command"] == COMMAND
    assert command["url"].endswith("/slack/events")
    assert doc["settings"]["interactivity"] == {
        "is_enabled": True,
        "request_url": command["url"],
    }
    assert set(doc["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "chat:write.public",
        "users:read",
        "users:read.email",
    }
    assert doc["settings"]["socket_mode_enabled"] is False
