"""``/slipstream deploy`` end to end: signed requests over real HTTP to a running
``slipstream serve``, real Terraform and agents on ``local``, and the thread the app
posts to a fake Slack on loopback."""

from __future__ import annotations

import time
import urllib.request

from engine.service import ON_THE_WAY
from tests.chatops.conftest import CHANNEL, Served
from tests.chatops.slackfake import Message


def thread_text(served: Served, parent: Message) -> str:
    return "\n".join(m.text for m in served.slack.thread(CHANNEL, parent.ts))


def test_serve_says_where_slack_reaches_it(served: Served) -> None:
    served.slack.wait_for(lambda: "serving" in served.log())
    assert f"Slack at {served.url}/slack/events" in served.log()


def test_deploy_webapp_reaches_ready_and_its_thread_tells_its_life(served: Served) -> None:
    answer = served.command("deploy webapp greeting=Bonjour", "UALICE", "deploy-webapp")
    assert answer.status == 200 and answer.seconds < 3.0, answer
    slack = served.slack
    parent = slack.wait_for(lambda: next(iter(slack.parents(CHANNEL)), None))
    assert "webapp" in parent.text
    run_id = slack.wait_for(lambda: next((r["id"] for r in served.runs()), None))
    run = served.runs()[0]
    assert (run["deployment"], run["user"]) == ("webapp", "alice")

    slack.wait_for(lambda: "Ready" in parent.text, timeout=120)
    links = slack.wait_for(
        lambda: [m for m in slack.thread(CHANNEL, parent.ts) if "ss:url.service" in m.text]
    )
    told = thread_text(served, parent)
    positions = [
        told.index(f"*{state}*")
        for state in ("Provisioning", "Executing", "SendingReports", "Ready")
    ]
    assert positions == sorted(positions), told
    assert "run of `webapp` created by alice" in told
    # The final link: the load balancer's URL, which answers with the greeting given.
    service_url = links[0].text.split("ss:url.service: ")[1].split("\n")[0]
    assert any(service_url in str(b) and "|" in str(b) for b in links[0].blocks)
    with urllib.request.urlopen(service_url, timeout=10) as response:
        assert "Bonjour" in response.read().decode()
    assert parent.edits and run_id in parent.text  # updated in place, not reposted
    assert len(slack.parents(CHANNEL)) == 1

    answer = served.command(f"destroy {run_id}", "UALICE", "destroy-webapp")
    assert answer.status == 200
    slack.wait_for(lambda: slack.answers("destroy-webapp"))
    assert "terminating" in slack.answers("destroy-webapp")[0]["text"]
    slack.wait_for(lambda: "Done" in parent.text, timeout=120)
    assert "*Done*" in thread_text(served, parent)


def test_a_late_instance_and_the_timeout_are_told_in_the_thread(served: Served) -> None:
    slack = served.slack
    served.command("deploy slow", "UALICE", "deploy-slow")
    parent = slack.wait_for(
        lambda: next((m for m in slack.parents(CHANNEL) if "slow" in m.text), None)
    )
    slack.wait_for(lambda: "Aborted" in parent.text, timeout=60)
    told = slack.wait_for(lambda: (t := thread_text(served, parent)) and "timeout" in t and t)
    assert "`s.1` is late in Executing (waiting for `s.1:never`)" in told
    assert told.index("is late") < told.index(":x: timeout: run stayed in Executing longer than 6s")
    assert "not voted: s.1 (waiting for s.1:never)" in parent.blocks[0]["text"]["text"]


def test_a_failed_instance_is_told_with_its_error(served: Served) -> None:
    slack = served.slack
    served.command("deploy broken", "UALICE", "deploy-broken")
    parent = slack.wait_for(
        lambda: next((m for m in slack.parents(CHANNEL) if "broken" in m.text), None)
    )
    slack.wait_for(lambda: "Aborted" in parent.text, timeout=60)
    told = slack.wait_for(lambda: (t := thread_text(served, parent)) and ":x:" in t and t)
    failed = told.index(":warning: f.1: script `deployment` finished (exit 3")
    assert failed < told.index(":x: script `deployment` of `f.1` failed (exit 3): disk full")
    assert (
        "> script `deployment` of `f.1` failed (exit 3): disk full"
        in parent.blocks[0]["text"]["text"]
    )


def test_a_slack_outage_never_blocks_a_run_and_the_thread_catches_up(served: Served) -> None:
    slack = served.slack
    known = {r["id"] for r in served.runs()}
    slack.down = True
    try:
        answer = served.command("deploy quick greeting=outage", "UALICE", "deploy-outage")
        assert answer.status == 200  # answering Slack needs no call to Slack
        run_id = slack.wait_for(
            lambda: next((r["id"] for r in served.runs() if r["id"] not in known), None)
        )
        deadline = time.monotonic() + 90
        while (state := served.status(run_id)["state"]) != "Ready":
            assert state in ON_THE_WAY and time.monotonic() < deadline, state
            time.sleep(0.3)
        assert slack.parents(CHANNEL) == [] or all(
            run_id not in m.text for m in slack.parents(CHANNEL)
        )
        assert any(c.status == 503 for c in slack.calls)  # it did try
    finally:
        slack.rate_limited["chat.postMessage"] = (1, 2)
        slack.down = False
    parent = slack.wait_for(
        lambda: next((m for m in slack.parents(CHANNEL) if run_id in m.text), None)
    )
    told = slack.wait_for(lambda: (t := thread_text(served, parent)) and "w.1:url" in t and t)
    positions = [told.index(f"*{state}*") for state in ("Provisioning", "Executing", "Ready")]
    assert positions == sorted(positions), told
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    limited = next(i for i, c in enumerate(posts) if c.status == 429)
    assert posts[limited + 1].at - posts[limited].at >= 2.0  # Retry-After: 2, honoured
