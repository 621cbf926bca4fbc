"""A running ``slipstream serve`` with Slack on, a fake Slack it talks to, and people.

One server per test module (a real subprocess on a free loopback port, the way
tests/webhooks/test_resident.py starts it), and these users in its service home:

- alice (``T1:UALICE``): deploy and approve on every deployment;
- bob (``T1:UBOB``): deploy only;
- dave (view only): not linked, but his Slack profile's e-mail address is his user's;
- ``T1:UNOBODY``: nobody.

The recipe root (the server's default: the service home's parent) holds ``quick``, a
one-node deployment that is Ready in seconds; ``slow``, whose only instance waits for a
value nobody sets (it is late, then the run times out); and ``broken``, whose script
fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.service import Service
from tests.chatops.slackfake import Answer, FakeSlack, command_body, send, signed_headers
from tests.e2e import cli, marked_processes
from tests.served import serve

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
TEAM = "T1"
CHANNEL = "C0OPS"


@dataclass
class Served:
    """The server under test and what it talks to."""

    home: Path
    url: str
    slack: FakeSlack
    proc: subprocess.Popen[bytes]
    log_file: Path

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    def command(self, text: str, user: str, name: str, channel: str = CHANNEL) -> Answer:
        """``/slipstream TEXT`` typed by ``user``; answers to the response URL ``name``."""
        body = command_body(
            text, team=TEAM, user=user, channel=channel, response_url=self.slack.response_url(name)
        )
        return send(self.events_url, body, signed_headers(SECRET, body))

    def runs(self) -> list[dict[str, Any]]:
        done = cli(self.home, "list", "--json", check=True)
        runs: list[dict[str, Any]] = json.loads(done.stdout)
        return runs

    def status(self, run_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            cli(self.home, "status", run_id, "--json", check=True).stdout
        )
        return doc

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def write_recipes(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "quick-web.yaml").write_text("""\
kind: component
name: quick-web
image: ubuntu-22.04
inputs:
  greeting: {default: hi}
outputs:
  url: {}
scripts:
  deployment: |
    ss-set url "http://$(ss-get hostname):9/$(ss-get greeting)"
""")
    (root / "quick.yaml").write_text("""\
kind: deployment
name: quick
inputs:
  greeting: {default: hi, locked: false}
keep_running: always
nodes:
  w:
    component: quick-web
    inputs:
      greeting: {from: input:greeting}
""")
    (root / "stuck.yaml").write_text("""\
kind: component
name: stuck
image: ubuntu-22.04
outputs:
  never: {}
scripts:
  deployment: |
    ss-get --timeout 60 never
""")
    (root / "failing.yaml").write_text("""\
kind: component
name: failing
image: ubuntu-22.04
scripts:
  deployment: |
    echo "disk full" >&2
    exit 3
""")
    (root / "broken.yaml").write_text("""\
kind: deployment
name: broken
keep_running: on-success
nodes:
  f: {component: failing}
""")
    (root / "slow.yaml").write_text("""\
kind: deployment
name: slow
keep_running: on-success
timeout: 6s
nodes:
  s: {component: stuck}
""")


def add_people(home: Path) -> None:
    """The users of the module docstring (in-process: the CLI's ``user link`` has its own
    test, and nine CLI starts would cost seconds per module)."""
    service = Service(home, None)
    admin = service.local_actor()
    for name, email in (("alice", None), ("bob", None), ("dave", "Dave@Example.org")):
        service.access.add_user(admin, name, email=email)
    service.accounts.link("slack", f"{TEAM}:UALICE", "alice")
    service.accounts.link("slack", f"{TEAM}:UBOB", "bob")
    for user, right in (
        ("alice", "deploy"),
        ("alice", "approve"),
        ("bob", "deploy"),
        ("dave", "view"),
    ):
        service.access.grant(admin, user, right, "*")
    service.store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    top = tmp_path_factory.mktemp("slack")
    home = top / ".slipstream"
    home.mkdir(mode=0o700)
    write_recipes(top / "recipes")
    add_people(home)
    with FakeSlack(TOKEN) as slack:
        slack.users["UDAVE"] = {
            "id": "UDAVE",
            "team_id": TEAM,
            "profile": {"email": "dave@example.org"},
        }
        started = serve(
            home,
            tls=False,
            env={
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_API_URL": slack.api_url,
            },
        )
        proc = started.proc
        server = Served(home, started.url, slack, proc, started.log)
        try:
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            for run in (home / "runs").glob("*") if (home / "runs").exists() else []:
                for pid in marked_processes(run.name):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            assert slack.problems == [], slack.problems
