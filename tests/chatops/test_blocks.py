"""Rendering: whatever a run or a person wrote, the messages stay within Block Kit's limits
(checked by the fake Slack's own validator) and mention or link nobody by accident."""

from __future__ import annotations

import time

from chatops import blocks
from chatops.commands import Refused, RunLogs, RunParams
from engine.store.runstore import Event
from tests.chatops.slackfake import block_problems, view_problems


def event(i: int, kind: str, message: str, **data: object) -> Event:
    return Event(i, "r1", time.time(), kind, message, dict(data))


def test_user_text_cannot_mention_or_link() -> None:
    abort = event(1, "abort", "boom <!channel> <http://evil|click> & more")
    line = blocks.event_line(abort)
    assert line == ":x: boom &lt;!channel&gt; &lt;http://evil|click&gt; &amp; more"
    view = blocks.RunView("r1", "webapp", "alice", "Aborted", abort="<@U1> did it")
    assert "&lt;@U1&gt; did it" in str(blocks.parent(view).blocks)
    assert blocks.link("javascript:alert(1)") == "`javascript:alert(1)`"
    assert blocks.link("http://x|y") == "`http://x|y`"


def test_big_answers_stay_within_block_kit_limits() -> None:
    params = {f"web.{i}:key{j}": "v" * 300 for i in range(40) for j in range(5)}
    logs = [event(i, "agent", "line " + "x" * 500) for i in range(200)]
    lines = [f"line {i} " + "y" * 400 for i in range(500)]
    for message in (
        blocks.render(RunParams("r1", params)),
        blocks.render(RunLogs("r1", logs)),
        blocks.render(Refused("no", tuple("z" * 200 for _ in range(100)))),
        blocks.progress(lines),
        blocks.help_text(None),
    ):
        assert block_problems(message.payload()["blocks"], 50) == []
        assert len(message.payload()["text"]) <= 4000
    view = blocks.RunView("r1", "webapp", "alice", "Initializing", approval="pending")
    request = blocks.approval_request(view, ["local: 4 to add"] * 300)
    assert block_problems(list(request.blocks), 50) == []
    modal = blocks.confirm_view(
        "r1", "webapp", "approve", ["local: 4 to add"] * 300, {"channel": "C1"}
    )
    assert view_problems(modal) == []


def test_only_life_events_become_thread_lines() -> None:
    told = [
        blocks.event_line(e)
        for e in [
            event(1, "state", "run entered Ready", state="Ready"),
            event(2, "terraform", "local: apply done"),
            event(3, "agent", "w.1: script `deployment` started", level="info"),
            event(4, "agent", "w.1: script `deployment` finished (exit 3, 0.1s)", level="error"),
            event(5, "report", "w.1: report uploaded (9 bytes)"),
        ]
    ]
    assert told == [
        ":white_check_mark: *Ready*",
        None,
        None,
        ":warning: w.1: script `deployment` finished (exit 3, 0.1s)",
        None,
    ]
