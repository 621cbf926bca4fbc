"""The scaled mode end to end: ``serve`` replicas and ``worker`` processes on one real
PostgreSQL schema (issue 15). Runs are deployed through replica 0 while agents talk to
replica 1; workers are killed with SIGKILL mid-run."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.e2e import agent_pids, marked_processes
from tests.scaled.cluster import Cluster, Worker
from tests.served import Served

INSTANCES = {"db.1", "web.1", "web.2", "lb.1"}
CHANGING = ("ss:state", "ss:abort")


def wait_event(cluster: Cluster, run_id: str, text: str, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in cluster.events(run_id):
            if text in event["message"]:
                return event
        time.sleep(0.1)
    raise AssertionError(f"no event with {text!r} in run {run_id}: {cluster.logs()}")


def job_worker(cluster: Cluster, run_id: str) -> Worker:
    """The worker running the run's latest job (its name ends with its pid)."""
    started = [
        e for e in cluster.events(run_id) if e["kind"] == "job" and "started" in e["message"]
    ]
    pid = int(started[-1]["data"]["worker"].rsplit("-", 1)[1])
    return next(w for w in cluster.workers if w.proc.pid == pid)


def params(cluster: Cluster, run_id: str) -> dict[str, str]:
    rows = cluster.sql("SELECT key, value FROM params WHERE run_id = %s", (run_id,))
    return {str(k): str(v) for k, v in rows}


def kept(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Keys set before that are gone or changed after (besides the run's state flags,
    status lines and instances' ``scale.state``, which move on)."""
    moving = (":statecustom", ":scale.state")
    return [
        k
        for k, v in before.items()
        if k not in CHANGING and not k.endswith(moving) and after.get(k) != v
    ]


def one_agent_each(run_id: str) -> dict[str, list[int]]:
    return {name: pids for name, pids in agent_pids(run_id).items() if len(pids) != 1}


def agent_call(
    replica: Served, token: str, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    conn = replica.connection(timeout=60)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body, headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def token(cluster: Cluster, run_id: str, instance: str) -> str:
    return (cluster.home / "runs" / run_id / "tokens" / instance).read_text().strip()


def test_deploy_through_one_replica_agents_on_another_abort_crosses(cluster: Cluster) -> None:
    a, b = cluster.replicas
    run_id = cluster.deploy(a)
    doc = cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled")
    assert doc["state"] == "Ready", doc
    assert (cluster.home / "runs" / run_id / "server" / "server.url").read_text().strip() == (
        cluster.agents_url(b)
    )
    assert one_agent_each(run_id) == {} and set(agent_pids(run_id)) == INSTANCES
    # Terraform's state is in PostgreSQL (a workspace per run and cloud), not in the root.
    workspaces = cluster.sql(f'SELECT name FROM "{cluster.schema}_tfstate".states')
    assert (f"{run_id}-local",) in workspaces
    assert not (cluster.home / "runs" / run_id / "tf" / "local" / "terraform.tfstate").exists()

    # An ss-get blocked on replica B fails as soon as an abort is raised through replica A.
    path = f"/agent/v1/runs/{run_id}/params/{quote('web.1:url.never')}?wait=30"
    got: list[tuple[int, bytes, float]] = []

    def blocked() -> None:
        status, body = agent_call(b, token(cluster, run_id, "web.1"), "GET", path)
        got.append((status, body, time.monotonic()))

    reader = threading.Thread(target=blocked)
    reader.start()
    time.sleep(1.0)  # the read is parked on replica B
    assert not got
    abort = b'{"message": "db.1 gave up"}'
    status, _ = agent_call(
        a, token(cluster, run_id, "db.1"), "POST", f"/agent/v1/runs/{run_id}/abort", abort
    )
    raised = time.monotonic()
    assert status == 200
    reader.join(timeout=20)
    assert got, "the blocked read on replica B did not return"
    status, body, returned = got[0]
    assert status == 409 and b"db.1 gave up" in body, (status, body)
    assert returned - raised < 15  # generous: the machine is loaded; bench/scaled.py times it

    # Operations: /metrics on a replica and on a worker, JSON log lines with the run id.
    text = b.call("GET", "/metrics").raw.decode()
    assert 'slipstream_agent_requests_total{route="vote"}' in text, text
    assert "slipstream_wake_latency_seconds_count" in text, text
    assert 'slipstream_runs{state="Ready"} 1' in text, text
    worker = job_worker(cluster, run_id)
    with urllib.request.urlopen(worker.ops_url + "/metrics", timeout=30) as page:
        text = page.read().decode()
    assert 'slipstream_jobs{status="succeeded"} 1' in text, text
    with urllib.request.urlopen(worker.ops_url + "/healthz", timeout=30) as page:
        assert json.loads(page.read())["ok"] is True
    lines = [json.loads(x) for x in worker.log.read_text().splitlines() if x.startswith("{")]
    assert any(x["run_id"] == run_id and "drive job" in x["message"] for x in lines), lines


def kill_mid(cluster: Cluster, run_id: str, trigger: str, until: str) -> tuple[dict[str, str], str]:
    """Wait for ``trigger``, SIGKILL the worker running the run's job; returns the params
    before the kill and the state the run was in."""
    wait_event(cluster, run_id, trigger)
    victim = job_worker(cluster, run_id)
    before = params(cluster, run_id)
    state = before["ss:state"]
    done_before = any(until in e["message"] for e in cluster.events(run_id))
    victim.kill9()
    assert not done_before, f"{until!r} came before the kill: the test killed too late"
    return before, state


def test_worker_killed_during_terraform_apply(cluster: Cluster) -> None:
    run_id = cluster.deploy(cluster.replicas[0])
    before, state = kill_mid(cluster, run_id, "Plan: 4 to add", "local: apply done")
    assert state == "Provisioning"
    doc = cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled")
    assert doc["state"] == "Ready", doc
    assert one_agent_each(run_id) == {} and set(agent_pids(run_id)) == INSTANCES
    assert kept(before, params(cluster, run_id)) == []
    messages = [e["message"] for e in cluster.events(run_id)]
    assert any("queued again for another worker" in m for m in messages), messages


def test_worker_killed_during_executing(cluster: Cluster) -> None:
    run_id = cluster.deploy(cluster.replicas[0])
    before, state = kill_mid(cluster, run_id, "run entered Executing", "run entered Ready")
    assert state in ("Executing", "SendingReports")
    doc = cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled")
    assert doc["state"] == "Ready", doc
    assert one_agent_each(run_id) == {} and set(agent_pids(run_id)) == INSTANCES
    assert kept(before, params(cluster, run_id)) == []
    # The killed job is taken on by the other worker, which finds the run Ready.
    wait_event(cluster, run_id, "(attempt 2)")


def test_worker_killed_during_finalizing(cluster: Cluster) -> None:
    a = cluster.replicas[0]
    run_id = cluster.deploy(a)
    assert cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled")["state"] == "Ready"
    cluster.call(a, "POST", f"/api/v1/runs/{run_id}/terminate")
    before, state = kill_mid(cluster, run_id, "local: destroy started", "local: destroy done")
    assert state == "Finalizing"
    doc = cluster.wait_state(run_id, "Done", timeout=400)
    assert doc["state"] == "Done"
    assert marked_processes(run_id) == []
    assert kept(before, params(cluster, run_id)) == []


def test_jobs_of_one_deployment_never_overlap(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.replicas
    run_id = cluster.deploy(a)
    # Two more jobs of the same run queued at once, through both replicas: both idle
    # workers race for them.
    cluster.call(b, "POST", f"/api/v1/runs/{run_id}/resume")
    cluster.call(a, "POST", f"/api/v1/runs/{run_id}/terminate")
    assert cluster.wait_state(run_id, "Done", "Cancelled", timeout=400)["state"] in (
        "Done",
        "Cancelled",
    )
    wait_event(cluster, run_id, "terminate job")
    spans: dict[int, list[float]] = {}
    for event in cluster.events(run_id):
        if event["kind"] == "job" and "job" in event["data"]:
            span = spans.setdefault(event["data"]["job"], [])
            if any(w in event["message"] for w in (" started", " done", " stopped")):
                span.append(event["at"])
    closed = sorted(s for s in spans.values() if len(s) == 2)
    assert len(closed) >= 2, spans
    for first, second in itertools.pairwise(closed):
        assert first[1] <= second[0], f"jobs overlap: {closed}"


def test_worker_stopped_gracefully_hands_its_job_on(cluster: Cluster) -> None:
    run_id = cluster.deploy(cluster.replicas[0])
    wait_event(cluster, run_id, "Plan: 4 to add")
    victim = job_worker(cluster, run_id)
    victim.proc.send_signal(signal.SIGTERM)  # a rolling restart
    assert victim.proc.wait(timeout=300) == 0, victim.log.read_text()
    doc = cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled")
    assert doc["state"] == "Ready", doc
    assert one_agent_each(run_id) == {} and set(agent_pids(run_id)) == INSTANCES
    wait_event(cluster, run_id, "interrupted (its worker stops): queued again")
    wait_event(cluster, run_id, "(attempt 2)")
