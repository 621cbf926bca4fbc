"""Slack's three seconds, under load: 50 concurrent ``/slipstream`` commands against a
running ``slipstream serve`` (a real subprocess, Slack on, talking to a fake Slack Web API
on loopback), signed as Slack signs them. Prints the p50/p99 time to the HTTP answer (the
ack; target p99 under 300 ms) and checks that no command is lost: every one gets its
answer, in the ack or on its response URL, and every ``plan`` its run and parent message.

Each round fires, at once: 40 reads of a Ready ``webapp`` run (status, params, logs,
list: answered lazily), 5 ``help`` (answered in the ack) and 5 ``plan webapp`` (each
stores a held run and runs ``terraform plan``, beside the acks).

Run: ``python bench/slack.py [rounds]`` (default 3).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.chatops.slackfake import (  # noqa: E402
    Answer,
    FakeSlack,
    command_body,
    send,
    signed_headers,
)
from tests.e2e import cli, marked_processes  # noqa: E402
from tests.served import serve  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench-token"
TEAM, USER, CHANNEL = "T1", "UBENCH", "C0BENCH"
CONCURRENT = 50
PLANS = 5


def start(home: Path, slack: FakeSlack) -> tuple[subprocess.Popen[bytes], str]:
    env = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": slack.api_url}
    started = serve(home, tls=False, env=env)
    return started.proc, started.url


def command(url: str, slack: FakeSlack, text: str, name: str) -> Answer:
    body = command_body(
        text, team=TEAM, user=USER, channel=CHANNEL, response_url=slack.response_url(name)
    )
    return send(f"{url}/slack/events", body, signed_headers(SECRET, body))


def ready_run(url: str, slack: FakeSlack, home: Path) -> str:
    command(url, slack, "deploy webapp", "setup")
    parent = slack.wait_for(lambda: next(iter(slack.parents(CHANNEL)), None))
    slack.wait_for(lambda: "Ready" in parent.text, timeout=180)
    return parent.text.split(" run ")[1].split(":")[0]


def fire(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Send every job of ``spec`` at once (run in a process of its own, so the fake Slack's
    work in this one does not slow the client down); each one's status, body and time."""
    jobs = spec["jobs"]
    go = threading.Barrier(len(jobs))

    def one(job: list[str]) -> dict[str, Any]:
        _, text, response_url = job
        body = command_body(text, team=TEAM, user=USER, channel=CHANNEL, response_url=response_url)
        headers = signed_headers(SECRET, body)
        go.wait()
        answer = send(spec["url"], body, headers)
        return {"status": answer.status, "body": answer.body, "seconds": answer.seconds}

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def round_of(url: str, slack: FakeSlack, run_id: str, n: int) -> tuple[list[float], list[str]]:
    """Fire one round at once; (seconds to each HTTP answer, what went missing)."""
    texts = [f"status {run_id}", f"params {run_id}", f"logs {run_id}", "list all"]
    jobs = [(f"r{n}-{i}", texts[i % 4]) for i in range(40)]
    jobs += [(f"r{n}-help-{i}", "help") for i in range(5)]
    jobs += [(f"r{n}-plan-{i}", "plan webapp") for i in range(PLANS)]
    spec = {
        "url": f"{url}/slack/events",
        "jobs": [(name, text, slack.response_url(name)) for name, text in jobs],
    }
    parents_before = len(slack.parents(CHANNEL))
    done = subprocess.run(
        [sys.executable, __file__, "--fire", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    answers = json.loads(done.stdout)
    missing = []
    for (name, text), answer in zip(jobs, answers, strict=True):
        if answer["status"] != 200:
            missing.append(f"{name}: HTTP {answer['status']}")
        elif text == "help" and "deploy RECIPE" not in answer["body"]:
            missing.append(f"{name}: no help in the ack")
        elif text not in ("help", "plan webapp"):
            try:
                slack.wait_for(lambda name=name: slack.answers(name), timeout=60)
            except AssertionError:
                missing.append(f"{name}: no answer on its response URL")
    try:
        slack.wait_for(lambda: len(slack.parents(CHANNEL)) >= parents_before + PLANS, timeout=120)
    except AssertionError:
        missing.append("a plan posted no parent message")
    return [a["seconds"] for a in answers], missing


def main() -> None:
    if sys.argv[1:2] == ["--fire"]:
        print(json.dumps(fire(json.loads(sys.argv[2]))))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="bench-slack-") as tmp, FakeSlack(TOKEN) as slack:
        home = Path(tmp) / ".slipstream"
        home.mkdir(mode=0o700)
        for args in (
            ("user", "add", "bench"),
            ("user", "link", "bench", "--slack", f"{TEAM}:{USER}"),
            ("right", "grant", "bench", "deploy", "*"),
        ):
            cli(home, *args, check=True)
        proc, url = start(home, slack)
        try:
            run_id = ready_run(url, slack, home)
            command(url, slack, "help", "warm-up")  # the first request builds Flask's app
            seconds: list[float] = []
            lost: list[str] = []
            load_before = os.getloadavg()
            for n in range(rounds):
                took, missing = round_of(url, slack, run_id, n)
                seconds += took
                lost += missing
            load_after = os.getloadavg()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            for run in (home / "runs").glob("*") if (home / "runs").exists() else []:
                for pid in marked_processes(run.name):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[max(0, round(0.99 * len(ms)) - 1)]
    print(f"{rounds} rounds of {CONCURRENT} concurrent /slipstream commands ({len(ms)} in all)")
    print(
        f"time to the HTTP answer: p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms,"
        f" max {ms[-1]:.0f} ms (target p99 < 300 ms)"
    )
    print(f"lost commands: {len(lost)}" + (f" {lost[:5]}" if lost else ""))
    print(
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}"
        f" ({os.cpu_count()} CPUs)"
    )
    print(f"Slack problems seen by the fake: {len(slack.problems)}")
    if lost or slack.problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
