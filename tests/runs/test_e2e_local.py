"""End to end on the `local` cloud: real Terraform, real processes, real HTTP.

Each test deploys with the real CLI into its own service home and checks what a user
would: states, parameters, the service answering, and nothing left behind on destroy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e import cli, deploy_json, fetch, marked_processes


def wait_gone(run_id: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_webapp_reaches_ready_and_every_tier_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, "webapp", "--input", "message=tiers-all-crossed")
    assert code == 0, doc
    assert doc["state"] == "Ready"
    url = doc["params"]["ss:url.service"]
    assert doc["params"]["lb.1:url"] == url
    run_id = doc["id"]
    try:
        served = set()
        for _ in range(4):
            body, served_by = fetch(url + "/")
            # lb → web → db: the db's record, the web instance's name, the lb's header
            assert "Hello! tiers-all-crossed (served by web." in body
            assert served_by in body
            served.add(served_by)
        assert served == {"web.1", "web.2"}  # round-robin over both backends
        assert {e["kind"] for e in doc["events"]} >= {"state", "terraform", "agent", "report"}
        assert marked_processes(run_id)
    finally:
        done = cli(home, "destroy", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert '"state": "Done"' in done.stdout
    assert wait_gone(run_id) == []
    assert not (home / "runs" / run_id / "sandboxes").exists()
    assert not (home / "runs" / run_id / "tokens").exists()
    status = cli(home, "status", run_id, "--json", check=True)
    assert '"state": "Done"' in status.stdout


def test_cluster_head_sees_every_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(
        home, "cluster", "--multiplicity", "worker=4", "--input", "problem_size=10000"
    )
    run_id = doc["id"]
    try:
        assert code == 0, doc
        machinefile = doc["params"]["head.1:machinefile"].splitlines()
        assert len(machinefile) == 4
        assert all(line.startswith("127.0.0.1 slots=") for line in machinefile)
        n = 10000
        assert doc["params"]["head.1:answer"] == str(n * (n + 1) * (2 * n + 1) // 6)
        partials = [int(doc["params"][f"worker.{i}:partial"]) for i in range(1, 5)]
        assert all(partials) and sum(partials) == int(doc["params"]["head.1:answer"])
    finally:
        cli(home, "destroy", run_id)
    assert wait_gone(run_id) == []


def write(root: Path, name: str, text: str) -> None:
    (root / f"{name}.yaml").write_text(text, encoding="utf-8")


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    root = tmp_path / "recipes"
    root.mkdir()
    (root / ".git").mkdir()  # the recipe root, as in a checkout
    write(
        root,
        "failing",
        """\
kind: component
name: failing
image: ubuntu-22.04
scripts:
  deployment: |
    echo "about to fail" >&2
    echo "disk on fire" >&2
    exit 3
""",
    )
    write(
        root,
        "waiter",
        """\
kind: component
name: waiter
image: ubuntu-22.04
inputs:
  thing: {}
scripts:
  deployment: |
    ss-display "waiting for the thing"
    ss-get thing
""",
    )
    write(
        root,
        "silent",
        """\
kind: component
name: silent
image: ubuntu-22.04
outputs:
  never: {}
scripts:
  deployment: "true"
""",
    )
    write(
        root,
        "fail-app",
        """\
kind: deployment
name: fail-app
nodes:
  ok: {component: silent}
  bad: {component: failing}
""",
    )
    write(
        root,
        "stuck-app",
        """\
kind: deployment
name: stuck-app
timeout: 6s
nodes:
  a:
    component: waiter
    inputs:
      thing: {from: b:never}
  b: {component: silent}
""",
    )
    write(
        root,
        "brief-app",
        """\
kind: deployment
name: brief-app
keep_running: never
nodes:
  one: {component: silent, multiplicity: 2}
""",
    )
    return root


def test_failing_script_aborts_the_run_with_its_message(tmp_path: Path, recipes: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(recipes / "fail-app.yaml"))
    assert code == 1
    assert doc["state"] == "Aborted"
    assert doc["abort"] == "script `deployment` of `bad.1` failed (exit 3): disk on fire"
    # keep_running defaults to on-success: an aborted run is destroyed
    assert wait_gone(doc["id"]) == []
    assert not (home / "runs" / doc["id"] / "sandboxes").exists()


def test_never_set_key_times_out_naming_the_waiter(tmp_path: Path, recipes: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(recipes / "stuck-app.yaml"))
    assert code == 1
    assert doc["state"] == "Aborted"
    assert doc["abort"].startswith("timeout: run stayed in Executing longer than 6s; not voted:")
    assert "a.1 (waiting for b.1:never)" in doc["abort"]
    assert "b.1" not in doc["abort"].replace("b.1:never", "")  # b voted: not named
    assert doc["params"]["a.1:statecustom"] == "waiting for the thing"
    assert wait_gone(doc["id"]) == []


def test_keep_running_never_destroys_everything(tmp_path: Path, recipes: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(recipes / "brief-app.yaml"))
    assert code == 0, doc
    assert doc["state"] == "Done"
    states = [e["data"].get("state") for e in doc["events"] if e["kind"] == "state"]
    assert states == ["Provisioning", "Executing", "SendingReports", "Ready", "Finalizing", "Done"]
    logs = cli(home, "logs", doc["id"], check=True).stdout
    assert "run entered Finalizing" in logs
    assert "local: destroy done" in logs
    assert wait_gone(doc["id"]) == []
    assert not (home / "runs" / doc["id"] / "sandboxes").exists()
