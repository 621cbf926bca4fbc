"""GitOps end to end: a real bare repository whose real ``post-receive`` hook posts signed
GitHub deliveries over HTTP to a real ``slipstream serve`` on loopback, which reconciles on
the ``local`` cloud with real Terraform and reports commit statuses to a fake GitHub API.

One service per scenario: deployments on this machine are slow, so the scenario reuses it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import cli, marked_processes
from tests.gitops.fakehost import FakeHost
from tests.gitops.gitrepo import Origin, github_headers, post, post_oversized
from tests.served import Served, serve

SECRET = "hook-secret-for-tests"
TOKEN = "ghp_test_token"

GREETER = """\
kind: component
name: greeter
image: ubuntu-22.04
inputs:
  greeting: {default: hi}
outputs:
  said: {}
scripts:
  deployment: |
    [ "$(ss-get greeting)" != fail ] || exit 3
    ss-set said "$(ss-get greeting)"
"""


def hello(extra: str = "") -> str:
    return f"""\
kind: deployment
name: hello
{extra}keep_running: always
inputs:
  greeting: {{default: hi}}
nodes:
  app:
    component: greeter
    inputs:
      greeting: {{from: input:greeting}}
"""


def declaration(greeting: str, apply: str = "auto") -> str:
    return f"""\
deployments:
  hello:
    recipe: apps/hello.yaml
    inputs: {{greeting: {greeting}}}
    apply: {apply}
    prune: true
"""


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    server = serve(tmp_path / "home", tls=False)
    yield server
    server.stop()


def add_repo(served: Served, origin: Origin, name: str, *extra: str) -> None:
    cli(
        served.home,
        "repo", "add", str(origin.bare), "--name", name, "--branch", "main",
        "--secret-env", "HOOK_SECRET", *extra,
        check=True,
    )  # fmt: skip


def show(served: Served, name: str = "infra") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        cli(served.home, "repo", "show", name, "--json", check=True).stdout
    )
    return doc


def run_doc(served: Served, run_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        cli(served.home, "status", run_id, "--json", check=True).stdout
    )
    return doc


def wait_for(what: str, check: Any, seconds: float = 240) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def test_push_reconciles_replaces_reports_and_prunes(served: Served, tmp_path: Path) -> None:
    origin = Origin(tmp_path / "git")
    with FakeHost("github", "acme/infra", TOKEN) as github:
        add_repo(
            served, origin, "infra",
            "--host", "github", "--api-url", github.url, "--project", "acme/infra",
            "--token-env", "GH_TOKEN",
        )  # fmt: skip
        origin.hook(f"{served.url}/hooks/infra", SECRET)

        # First push: the declared deployment reaches Ready.
        sha1 = origin.commit(
            {
                "slipstream.yaml": declaration("hello"),
                "apps/hello.yaml": hello(),
                "components/greeter.yaml": GREETER,
            },
            "declare hello",
        )
        origin.push()
        (sent,) = origin.deliveries()
        assert sent["status"] == 202 and sent["after"] == sha1, sent
        assert json.loads(sent["answer"])["status"] == "queued"
        run1 = wait_for("the first run", lambda: show(served)["deployments"]["hello"]["run"])
        assert run_doc(served, run1)["state"] == "Ready"
        assert run_doc(served, run1)["params"]["app.1:said"] == "hello"
        assert show(served)["last_commit"] == sha1
        assert {s["state"] for s in github.statuses(sha1)} >= {"pending", "success"}
        assert github.refused == []

        # The same delivery again: the same runs, nothing new.
        body, headers = sent["body"].encode(), sent["headers"]
        status, answer = post(f"{served.url}/hooks/infra", body, headers)
        assert (status, answer["replayed"], answer["runs"]) == (200, True, [run1])
        assert len(json.loads(cli(served.home, "list", "--json").stdout)) == 1

        # Second push changing an input: a new run reaches Ready, then the old one is Done.
        sha2 = origin.commit({"slipstream.yaml": declaration("bonjour")}, "say bonjour")
        origin.push()
        run2 = wait_for(
            "the second run to serve",
            lambda: (r := show(served)["deployments"]["hello"]["run"]) != run1 and r,
        )
        doc2 = run_doc(served, run2)
        assert doc2["state"] == "Ready" and doc2["params"]["app.1:said"] == "bonjour"
        wait_for("the first run to be Done", lambda: run_doc(served, run1)["state"] == "Done")
        assert show(served)["deployments"]["hello"]["commit"] == sha2

        # A broken recipe: the status names the file and line; the running run is untouched.
        sha3 = origin.commit({"apps/hello.yaml": hello("colour: red\n")}, "break it")
        origin.push()
        failed = wait_for(
            "a failure status",
            lambda: [s for s in github.statuses(sha3) if s["state"] == "failure"],
        )
        assert failed[0]["description"].startswith("apps/hello.yaml:3:1: unknown key `colour`")
        assert "apps/hello.yaml:3:1" in show(served)["last_error"]
        assert show(served)["deployments"]["hello"] == {
            **show(served)["deployments"]["hello"],
            "run": run2,
            "pending_run": "",
        }
        assert run_doc(served, run2)["state"] == "Ready"
        assert len(json.loads(cli(served.home, "list", "--json").stdout)) == 2

        # A new run that fails: the old one keeps running, the failure is reported.
        sha4 = origin.commit(
            {"slipstream.yaml": declaration("fail"), "apps/hello.yaml": hello()}, "fail"
        )
        origin.push()
        failed = wait_for(
            "the failed run's status",
            lambda: [s for s in github.statuses(sha4) if s["state"] == "failure"],
        )
        assert "Aborted" in failed[0]["description"], failed
        assert f"run {run2} keeps running" in show(served)["last_error"]
        assert show(served)["deployments"]["hello"]["run"] == run2
        assert run_doc(served, run2)["state"] == "Ready"

        # Removing the declaration (it had prune: true): nothing of it runs.
        origin.commit({"slipstream.yaml": "deployments: {}\n"}, "remove it")
        origin.push()
        wait_for("the pruned run to be Done", lambda: run_doc(served, run2)["state"] == "Done")
        assert show(served)["deployments"] == {}
        wait_for("no process left", lambda: not marked_processes(run2), seconds=60)
        assert [d["status"] for d in origin.deliveries()] == [202] * 5


def test_two_concurrent_pushes_end_on_the_newest_commit(served: Served, tmp_path: Path) -> None:
    """Held for approval (nothing is applied): both deliveries race, one declared run is
    left waiting, and it is the newest commit's."""
    origin = Origin(tmp_path / "git")
    add_repo(served, origin, "race")
    files = {"apps/hello.yaml": hello(), "components/greeter.yaml": GREETER}
    sha_a = origin.commit({**files, "slipstream.yaml": declaration("a", "approve")}, "a")
    origin.push()
    sha_b = origin.commit({"slipstream.yaml": declaration("b", "approve")}, "b")
    origin.push()
    answers: list[tuple[int, dict[str, Any]]] = []

    def deliver(sha: str, delivery: str) -> None:
        body = json.dumps(
            {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "repository": {}}
        ).encode()
        answers.append(
            post(f"{served.url}/hooks/race", body, github_headers(body, SECRET, delivery))
        )

    threads = [threading.Thread(target=deliver, args=(s, f"d-{s[:6]}")) for s in (sha_a, sha_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [202, 202]
    wait_for(
        "the reconcile of the newest commit", lambda: show(served, "race")["last_commit"] == sha_b
    )
    hello_row = show(served, "race")["deployments"]["hello"]
    assert hello_row["pending_commit"] == sha_b and hello_row["run"] == ""
    runs = json.loads(cli(served.home, "list", "--json").stdout)
    live = [r for r in runs if r["state"] not in ("Done", "Cancelled", "Aborted")]
    assert [r["id"] for r in live] == [hello_row["pending_run"]]


def test_bad_deliveries_are_refused_and_change_nothing(served: Served, tmp_path: Path) -> None:
    origin = Origin(tmp_path / "git")
    add_repo(served, origin, "infra")
    sha = origin.commit({"slipstream.yaml": "deployments: {}\n"}, "empty")
    origin.push()
    url = f"{served.url}/hooks/infra"
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha}).encode()

    forged = github_headers(body, "not-the-secret", "d-forged")
    assert post(url, body, forged)[0] == 401
    unsigned = {k: v for k, v in forged.items() if k != "X-Hub-Signature-256"}
    assert post(url, body, unsigned)[0] == 401
    gitlab_guess = {
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": "guess",
        "Idempotency-Key": "k",
    }
    assert post(url, body, gitlab_guess)[0] == 401
    malformed = b'{"ref": "refs/heads/main", "after": 42'
    assert post(url, malformed, github_headers(malformed, SECRET, "d-bad"))[0] == 400
    status, answer = post(f"{served.url}/hooks/nobody", body, github_headers(body, SECRET, "d"))
    assert status == 404 and "nobody" in answer["error"]
    big = 25 * 1024 * 1024 + 1
    headers = github_headers(b"", SECRET, "d-big")
    assert post_oversized(url, big, headers, chunked=False) == 413
    assert post_oversized(url, big, headers, chunked=True) == 413
    assert show(served)["last_commit"] == ""  # nothing was reconciled
    ping = b'{"zen": "Design for failure.", "hook_id": 1}'
    status, answer = post(url, ping, github_headers(ping, SECRET, "d-ping", "ping"))
    assert (status, answer["status"]) == (202, "ignored")
    status, answer = post(url, body, github_headers(body, SECRET, "d-good"))
    assert status == 202
    wait_for("the reconcile", lambda: show(served)["last_commit"] == sha, seconds=120)
    assert post(url, body, github_headers(body, SECRET, "d-good"))[0] == 200


def test_polling_reconciles_each_new_commit_once_and_approval_swaps_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --poll`` (here 1 s, from SLIPSTREAM_SERVE_POLL) with no webhook at all."""
    monkeypatch.setenv("SLIPSTREAM_SERVE_POLL", "1")
    served = serve(tmp_path / "home", tls=False)
    try:
        origin = Origin(tmp_path / "git")
        add_repo(served, origin, "polled")
        files = {"apps/hello.yaml": hello(), "components/greeter.yaml": GREETER}
        sha = origin.commit({**files, "slipstream.yaml": declaration("p", "approve")}, "p")
        origin.push()
        wait_for("the poll", lambda: show(served, "polled")["last_commit"] == sha, seconds=120)
        held = show(served, "polled")["deployments"]["hello"]["pending_run"]
        assert held and run_doc(served, held)["approval"] == "pending"
        time.sleep(4)  # several polls of the same head: nothing new
        sha2 = origin.commit({"README.md": "not a recipe\n"}, "docs")  # nothing declared changed
        origin.push()
        wait_for("the next poll", lambda: show(served, "polled")["last_commit"] == sha2)
        assert [r["id"] for r in json.loads(cli(served.home, "list", "--json").stdout)] == [held]

        # Approved, the held run is applied, reaches Ready and serves the declaration.
        admin = served.user("root", admin=True)
        assert served.call("POST", f"/api/v1/runs/{held}/approve", admin).status == 202
        wait_for(
            "the approved run to serve",
            lambda: show(served, "polled")["deployments"]["hello"]["run"] == held,
        )
        doc = run_doc(served, held)
        assert doc["state"] == "Ready" and doc["params"]["app.1:said"] == "p"
    finally:
        served.stop()


def test_repo_sync_deploys_in_the_calling_process(tmp_path: Path) -> None:
    """The embedded mode: ``slipstream repo sync`` with no service running."""
    home = tmp_path / "home"
    origin = Origin(tmp_path / "git")
    files = {"apps/hello.yaml": hello(), "components/greeter.yaml": GREETER}
    origin.commit({**files, "slipstream.yaml": declaration("synced")}, "declare")
    origin.push()
    cli(home, "repo", "add", str(origin.bare), "--name", "infra", check=True)
    listed = json.loads(cli(home, "repo", "list", "--json", check=True).stdout)
    assert [(r["name"], r["branch"], r["last_commit"]) for r in listed] == [("infra", "main", "")]
    done = cli(home, "repo", "sync", "infra", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["started"][0]
    doc = json.loads(cli(home, "status", run_id, "--json", check=True).stdout)
    assert doc["params"]["app.1:said"] == "synced"
    again = json.loads(cli(home, "repo", "sync", "infra", "--json", check=True).stdout)
    assert (again["started"], again["unchanged"]) == ([], ["hello"])
    cli(home, "destroy", run_id, check=True)
    assert cli(home, "repo", "remove", "infra").returncode == 0
    assert cli(home, "repo", "show", "infra").returncode == 1
