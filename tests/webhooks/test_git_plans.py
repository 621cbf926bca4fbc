"""Pull and merge requests are planned, never applied, and reported back to the host: a
commit status and one comment updated in place, through fake GitHub, GitLab and Gitea
APIs on loopback that check each host's real request shapes (method, path, auth, body)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import cli
from tests.gitops.fakehost import FakeHost
from tests.gitops.gitrepo import PAYLOADS, Origin, post
from tests.served import Served, serve
from tests.webhooks.test_git_hooks import GREETER, hello, wait_for

SECRET = "pr-secret"
TOKEN = "host-token"
PROJECTS = {"github": "acme/infra", "gitlab": "42", "gitea": "acme/infra"}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOST_TOKEN", TOKEN)
    server = serve(tmp_path / "home", tls=False)
    yield server
    server.stop()


def delivery(
    host: str, sha: str, n: int, delivery_id: str, action: str
) -> tuple[bytes, dict[str, str]]:
    """A pull (merge) request delivery shaped as the host sends it, for commit ``sha``."""
    if host == "gitlab":
        doc: dict[str, Any] = json.loads((PAYLOADS / "gitlab-merge_request.json").read_text())
        doc["project"]["id"] = int(PROJECTS["gitlab"])
        attrs = doc["object_attributes"]
        attrs.update(iid=n, source_branch="feature", target_branch="main", action=action)
        attrs["last_commit"]["id"] = sha
        body = json.dumps(doc).encode()
        headers = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET}
        return body, {
            **headers,
            "X-Gitlab-Event-UUID": delivery_id,
            "Content-Type": "application/json",
        }
    doc = json.loads((PAYLOADS / "github-pull_request.json").read_text())
    updated = "synchronized" if host == "gitea" else "synchronize"  # as each host says it
    doc.update(number=n, action=updated if action == "update" else "opened")
    doc["pull_request"]["head"].update(sha=sha, ref="feature")
    doc["pull_request"]["base"]["ref"] = "main"
    doc["repository"]["full_name"] = "acme/infra"
    body = json.dumps(doc).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    if host == "gitea":
        headers = {"X-Gitea-Event": "pull_request", "X-GitHub-Event": "pull_request"}
        headers.update({"X-Gitea-Delivery": delivery_id, "X-Gitea-Signature": signature})
    else:
        headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery_id}
        headers["X-Hub-Signature-256"] = f"sha256={signature}"
    return body, {**headers, "Content-Type": "application/json"}


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
def test_a_pull_request_is_planned_and_reported_in_place(
    served: Served, tmp_path: Path, host: str
) -> None:
    origin = Origin(tmp_path / "git")
    declared = "deployments:\n  hello:\n    recipe: apps/hello.yaml\n"
    origin.commit({"slipstream.yaml": declared, "apps/hello.yaml": hello(),
                   "components/greeter.yaml": GREETER}, "base")  # fmt: skip
    origin.push()
    good = origin.commit(
        {"slipstream.yaml": declared.replace("hello:\n", "hello:\n    inputs: {greeting: yo}\n")},
        "yo",
        branch="feature",
    )
    origin.push("feature")
    with FakeHost(host, PROJECTS[host], TOKEN) as fake:
        cli(
            served.home, "repo", "add", str(origin.bare), "--name", "infra",
            "--secret-env", "HOOK_SECRET", "--host", host, "--api-url", fake.url,
            "--project", PROJECTS[host], "--token-env", "HOST_TOKEN", check=True,
        )  # fmt: skip
        url = f"{served.url}/hooks/infra"
        status, answer = post(url, *delivery(host, good, 7, "pr-1", "open"))
        assert (status, answer["status"]) == (202, "queued"), answer
        final = wait_for(
            "the plan's status",
            lambda: [s for s in fake.statuses(good) if s["state"] != fake_pending(host)],
        )
        assert final[0]["state"] == "success", (final, fake.refused)
        assert "plan: 1 to add, 0 to change, 0 to destroy" in final[0]["description"]
        (comment,) = fake.comments()
        assert comment["method"] == "POST" and comment["groups"] == ("7",)
        assert "| local | app | 1 | 0 | 0 |" in comment["body"]

        # A new commit with a broken recipe: the same comment, updated, names file and line.
        broken = hello().replace("keep_running: always", 'keep_running: "@team **now** <b>"')
        bad = origin.commit({"apps/hello.yaml": broken}, "broken", branch="feature")
        origin.push("feature")
        status, _ = post(url, *delivery(host, bad, 7, "pr-2", "update"))
        assert status == 202
        wait_for("the second comment", lambda: len(fake.comments()) == 2)
        update = fake.comments()[1]
        assert update["method"] == ("PUT" if host == "gitlab" else "PATCH")
        assert update["groups"][-1] == "101"  # the id the host gave the first comment
        body = update["body"]  # the recipe's text is quoted, escaped
        assert "apps/hello\\.yaml:3:15:" in body and "&#64;team \\*\\*now\\*\\* &lt;b&gt;" in body
        assert "@team" not in body and "<b>" not in body and "**now" not in body
        failed = wait_for(
            "the failure status",
            lambda: [s for s in fake.statuses(bad) if s["state"] != fake_pending(host)],
        )
        assert failed[0]["state"] == ("failed" if host == "gitlab" else "failure")
        assert failed[0]["description"].startswith("apps/hello.yaml:3:15: ")
        assert fake.refused == []
    assert json.loads(cli(served.home, "list", "--json").stdout) == []  # plans only, no run


def fake_pending(host: str) -> str:
    return "running" if host == "gitlab" else "pending"
