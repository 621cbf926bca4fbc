"""Approvals from Slack: a held run's plan with Approve and Cancel buttons in its thread, a
confirmation dialog, and only holders of the ``approve`` right deciding; and runs started
elsewhere (as the GitOps front door will) told in the channel their origin names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from chatops.blocks import APPROVE, CANCEL, DECIDE
from tests.chatops.conftest import CHANNEL, SECRET, TEAM, Served
from tests.chatops.slackfake import (
    Answer,
    Message,
    button_body,
    send,
    signed_headers,
    submission_body,
)
from tests.e2e import REPO

REPO_CHANNEL = "C0REPO"
CREATE = """
import json, sys
from pathlib import Path
from engine.service import Service
home, recipe, origin = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
service = Service(home, None)
actor = service.local_actor("gitops")
run_id = service.deploy(actor, recipe, None, recipe.parent, hold=True, origin=origin)
service.manager().release(run_id)
print(run_id)
"""


def approval_message(served: Served, channel: str, parent: Message) -> Message:
    """The thread reply carrying the Approve and Cancel buttons."""
    return served.slack.wait_for(
        lambda: next(
            (
                m
                for m in served.slack.thread(channel, parent.ts)
                if any(b["type"] == "actions" for b in m.blocks)
            ),
            None,
        ),
        timeout=60,
    )


def press(served: Served, action: str, run_id: str, user: str, message: Message) -> Answer:
    body = button_body(
        action,
        run_id,
        team=TEAM,
        user=user,
        channel=message.channel,
        message_ts=message.ts,
        trigger_id=served.slack.trigger(),
        response_url=served.slack.response_url(f"press-{user}"),
    )
    return send(served.events_url, body, signed_headers(SECRET, body))


def opened_view(served: Served, after: int) -> dict[str, Any]:
    call = served.slack.wait_for(
        lambda: next((c for c in served.slack.calls[after:] if c.method == "views.open"), None)
    )
    view: dict[str, Any] = call.fields["view"]
    return view


def ephemeral_to(served: Served, user: str, after: int) -> str:
    call = served.slack.wait_for(
        lambda: next(
            (
                c
                for c in served.slack.calls[after:]
                if c.method == "chat.postEphemeral" and c.fields["user"] == user
            ),
            None,
        )
    )
    return str(call.fields["text"])


def submit(served: Served, view: dict[str, Any], user: str) -> Answer:
    body = submission_body(view, team=TEAM, user=user)
    return send(served.events_url, body, signed_headers(SECRET, body))


def test_an_approvers_press_starts_a_held_run_and_no_one_else_can(served: Served) -> None:
    slack = served.slack
    assert served.command("plan quick greeting=held", "UALICE", "plan-quick").status == 200
    parent = slack.wait_for(lambda: next(iter(slack.parents(CHANNEL)), None))
    request = approval_message(served, CHANNEL, parent)
    run_id = request.blocks[-1]["elements"][0]["value"]
    assert "local: 1 to add, 0 to change, 0 to destroy" in request.text + str(request.blocks)
    assert "waiting for an approval" in parent.blocks[0]["text"]["text"]

    # Someone without the approve right, then someone unknown: refused, only to them.
    mark = len(slack.calls)
    assert press(served, APPROVE, run_id, "UBOB", request).status == 200
    assert "bob lacks the `approve` right on deployment `quick`" in ephemeral_to(
        served, "UBOB", mark
    )
    assert press(served, APPROVE, run_id, "UNOBODY", request).status == 200
    assert "I do not know who you are" in ephemeral_to(served, "UNOBODY", mark)
    assert "views.open" not in slack.methods()[mark:]
    assert served.status(run_id)["state"] == "Initializing"

    # The approver: a confirmation dialog first, and the run starts when it is submitted.
    mark = len(slack.calls)
    answer = press(served, APPROVE, run_id, "UALICE", request)
    assert answer.status == 200 and answer.seconds < 3.0
    view = opened_view(served, mark)
    assert (view["callback_id"], view["submit"]["text"]) == (DECIDE, "Approve")
    assert "local: 1 to add" in json.dumps(view["blocks"])
    assert served.status(run_id)["state"] == "Initializing"  # not before the submission
    answer = submit(served, view, "UALICE")
    assert (answer.status, answer.body) == (200, "")  # an empty answer closes the dialog
    slack.wait_for(lambda: "Ready" in parent.text, timeout=90)
    slack.wait_for(lambda: "approved by alice" in str(request.blocks))
    assert not any(b["type"] == "actions" for b in request.blocks)  # no buttons left
    assert served.status(run_id)["params"]["w.1:greeting"] == "held"


def test_a_run_started_from_git_is_told_in_the_repository_channel_and_can_be_cancelled(
    served: Served,
) -> None:
    slack = served.slack
    recipe = served.home.parent / "recipes" / "quick.yaml"
    origin = {"repository": "ops/infra", "notify": {"slack": {"channel": REPO_CHANNEL}}}
    run_id = subprocess.run(
        [sys.executable, "-c", CREATE, str(served.home), str(recipe), json.dumps(origin)],
        cwd=REPO,
        env=dict(os.environ, SLIPSTREAM_HOME=str(served.home)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = slack.wait_for(lambda: next(iter(slack.parents(REPO_CHANNEL)), None), timeout=60)
    assert run_id in parent.text and "gitops" in parent.blocks[0]["text"]["text"]
    request = approval_message(served, REPO_CHANNEL, parent)

    mark = len(slack.calls)
    assert press(served, CANCEL, run_id, "UALICE", request).status == 200
    view = opened_view(served, mark)
    assert view["title"]["text"] == "Cancel run"
    assert submit(served, view, "UALICE").status == 200
    slack.wait_for(lambda: "Cancelled" in parent.text, timeout=60)
    slack.wait_for(lambda: "rejected by alice" in str(request.blocks))
    deadline = time.monotonic() + 30
    while served.status(run_id)["state"] != "Cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert served.status(run_id)["params"].get("w.1:hostname") is None  # never applied
