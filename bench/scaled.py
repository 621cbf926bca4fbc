"""The scaled mode's figures (issue 15): job throughput with 1 and 2 workers, and the
coordination benchmark's instances through two ``serve`` replicas on PostgreSQL.

1. Throughput: ``--deployments`` runs of ``webapp`` on ``local`` submitted at once through
   one replica to 1 worker, then (a new schema) to 2 workers, each worker driving
   ``--concurrency`` runs at once; time from the first submit until every run is Ready,
   and the ratio. Every run is terminated afterwards.
2. Coordination: bench/coordination.py's run (the same recipes, simulated instances of
   bench/simagents.py, analysis and printing), but the instances alternate between replica
   A and replica B (TCP), so every ping-pong pair spans both and server.1 (on A) fans out
   to clients half of which are on B: each of those wake-ups crosses processes through
   LISTEN/NOTIFY. The bench process plays the worker: ``RunManager.drive`` with Terraform
   left out, learning of the moves through its own listener; the later states are moved
   by whichever replica sees the last vote. Times are the instances' (as there); the
   "server process" figures are the two replicas' summed. Then ``ss:abort`` raised
   through replica A → a long-poll parked on replica B returns (target 100 ms).

Needs the machine's PostgreSQL (127.0.0.1:5432, database ``test``); each part uses a
schema of its own, dropped afterwards.

Run: ``python bench/scaled.py [--deployments 20] [--n 500] [--burst 3] [--procs K]
[--skip-throughput] [--skip-coordination]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import coordination as coord

from tests.scaled.cluster import Cluster

ABORT_TARGET_S = 0.100


# -- 1. throughput ------------------------------------------------------------------------


def throughput(workers: int, deployments: int, concurrency: int) -> float:
    """Seconds from submitting ``deployments`` webapps until all are Ready."""
    with tempfile.TemporaryDirectory(prefix="ss-scaled-") as tmp:
        cluster = Cluster.start(Path(tmp), replicas=2, workers=0)
        try:
            for i in range(workers):
                cluster.workers.append(cluster.worker(f"w{i}", concurrency=concurrency))
            a = cluster.replicas[0]
            start = time.monotonic()
            runs = [cluster.deploy(a) for _ in range(deployments)]
            for run_id in runs:
                doc = cluster.wait_state(run_id, "Ready", "Aborted", "Cancelled", timeout=1800)
                if doc["state"] != "Ready":
                    raise SystemExit(f"run {run_id} ended {doc['state']}: {doc['abort']}")
            took = time.monotonic() - start
            for run_id in runs:
                cluster.call(a, "POST", f"/api/v1/runs/{run_id}/terminate")
            for run_id in runs:
                cluster.wait_state(run_id, "Done", timeout=1800)
            return took
        finally:
            cluster.stop()


# -- 2. coordination through two replicas -------------------------------------------------


def replica_figures(pids: list[int]) -> tuple[float, float, float, int]:
    """(CPU seconds, RSS MiB, peak RSS MiB, open fds) of the replicas' processes, summed."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = rss = peak = 0.0
    fds = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            field, _, value = line.partition(":")
            if field == "VmRSS":
                rss += int(value.split()[0]) / 1024
            elif field == "VmHWM":
                peak += int(value.split()[0]) / 1024
        fds += len(os.listdir(f"/proc/{pid}/fd"))
    return cpu, rss, peak, fds


def coordination(n: int, burst: float, timeout: float, procs: int) -> dict[str, Any]:
    """bench/coordination.py's run, with its simulated instances split over two replicas
    and this process driving the run (as a worker would) through its own PostgreSQL
    listener; figures as :func:`coordination.analyse` gives them, the server's being the
    two replicas' summed."""
    from engine.compile.runspec import instance_names
    from engine.coordination.coordinator import Coordinator
    from engine.coordination.hub import Hub
    from engine.coordination.replicas import Replicas
    from engine.recipes.clouds import CloudsConfig
    from engine.recipes.loader import RecipeLoader
    from engine.runs import manager as manager_module
    from engine.runs.launcher import token_file
    from engine.runs.manager import RunManager
    from engine.store.runstore import RunStore
    from engine.terraform.binary import TerraformExe

    if n < 2:
        raise SystemExit("--n must be at least 2 (one server, N-1 clients)")
    with tempfile.TemporaryDirectory(prefix="ss-scaled-") as tmp:
        cluster = Cluster.start(Path(tmp), replicas=2, workers=0)
        store = RunStore.open(cluster.url)
        replicas = None
        try:
            root = Path(tmp) / "recipes"
            root.mkdir()
            clouds = CloudsConfig.default()
            recipe = coord.write_recipes(root, n, int(timeout))
            dep = RecipeLoader(root, clouds).deployment(recipe, require_values=True)
            coordinator = Coordinator(store, Hub())
            replicas = Replicas(store, coordinator).start()
            manager = RunManager(
                cluster.home,
                store,
                coordinator.hub,
                TerraformExe(["false"], "bench"),
                coordinator=coordinator,
            )
            # Terraform is never started: the clouds count as applied as soon as asked.
            manager._apply_all = lambda run_id: None  # type: ignore[method-assign]
            # Simulated instances take no memory: the check for real local processes is off.
            manager_module.check_local_capacity = lambda instances, available: None  # type: ignore[attr-defined]
            run_id = manager.create(dep, clouds, "bench")
            names = instance_names(coordinator.spec(run_id))
            tokens = {
                name: token_file(cluster.home, run_id, name).read_text(encoding="utf-8").strip()
                for name in names
            }
            # Instances alternate A, B, A…; ping-pong pairs are (names[2k], names[2k+1]),
            # so every pair spans both replicas, and server.1 (on A) fans out to clients
            # half of which are on B.
            ends = [f"tcp:{r.url.removeprefix('http://')}" for r in cluster.replicas]
            targets = {name: ends[i % 2] for i, name in enumerate(names)}
            partners: dict[str, tuple[str, bool]] = {}
            for a, b in zip(names[0::2], names[1::2], strict=False):
                partners[a], partners[b] = (b, True), (a, False)
            peers = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
            procs = procs or (1 if n <= 1000 else 2)
            pids = [r.proc.pid for r in cluster.replicas]
            fds_before = replica_figures(pids)[3]
            crowd = coord.Crowd(
                {
                    "target": ends[0],
                    "targets": targets,
                    "run_id": run_id,
                    "n": n,
                    "names": names,
                    "tokens": tokens,
                    "partners": partners,
                    "peers": peers,
                    "burst": burst,
                    "deadline": time.monotonic() + timeout,
                },
                procs,
            )
            crowd.wait_connected()
            fds_connected = replica_figures(pids)[3]
            load_at_start = coord.load()
            cpu = replica_figures(pids)[0]
            start = time.monotonic()
            state = manager.drive(run_id)  # returns at Ready (or once aborted)
            drove = time.monotonic() - start
            cpu_ready = replica_figures(pids)[0]
            finished = crowd.results()
            cpu_after, rss, peak, _ = replica_figures(pids)
            time.sleep(0.5)  # the replicas close what the instances closed
            fds_after = replica_figures(pids)[3]
            abort = coordinator.refresh(run_id)[1]
            abort_s, abort_sent_s, abort_status = abort_across(cluster, run_id, tokens, names)
            res = coord.analyse(n, start, finished["instances"])
            res.update(
                ok=res["ok"] and state == "Ready" and abort is None,
                state=state,
                abort=abort,
                drove=drove,
                server_cpu=cpu_ready - cpu,
                burst_cpu=cpu_after - cpu_ready,
                client_cpu=finished["cpu"],
                procs=procs,
                rss=rss,
                peak=peak,
                fds=(fds_before, fds_connected, fds_after),
                flood=0,
                load=load_at_start,
                abort_s=abort_s,
                abort_sent_s=abort_sent_s,
                abort_status=abort_status,
            )
            return res
        finally:
            if replicas is not None:
                replicas.stop()
            store.close()
            cluster.stop()


def abort_across(
    cluster: Cluster, run_id: str, tokens: dict[str, str], names: list[str]
) -> tuple[float, float, int]:
    """Seconds from an abort acknowledged by replica A (and from when it was sent) to the
    return of a read of an unset key parked on replica B, and the status B answered (409:
    the read learned of the abort)."""
    import http.client
    import json

    a, b = cluster.replicas
    got: list[tuple[float, int]] = []

    def parked() -> None:
        conn = http.client.HTTPConnection(b.url.removeprefix("http://"), timeout=60)
        headers = {"Authorization": f"Bearer {tokens[names[1]]}"}
        conn.request("GET", f"/agent/v1/runs/{run_id}/params/url.never?wait=30", None, headers)
        answer = conn.getresponse()
        answer.read()
        got.append((time.monotonic(), answer.status))

    reader = threading.Thread(target=parked)
    reader.start()
    time.sleep(1.0)
    conn = http.client.HTTPConnection(a.url.removeprefix("http://"), timeout=60)
    body = json.dumps({"message": "bench: abort across replicas"}).encode()
    headers = {"Authorization": f"Bearer {tokens[names[0]]}", "Content-Type": "application/json"}
    sent = time.monotonic()
    conn.request("POST", f"/agent/v1/runs/{run_id}/abort", body, headers)
    conn.getresponse().read()
    raised = time.monotonic()
    reader.join(40)
    if not got:
        return float("inf"), float("inf"), 0
    return got[0][0] - raised, got[0][0] - sent, got[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="runs per worker at once")
    parser.add_argument("--n", type=int, default=500, help="instances of the coordination run")
    parser.add_argument("--burst", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--procs", type=int, default=0, help="instance processes (default: auto)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-coordination", action="store_true")
    args = parser.parse_args()
    os.umask(0o077)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if not args.skip_throughput:
        one = throughput(1, args.deployments, args.concurrency)
        print(f"{args.deployments} webapp runs to Ready, 1 worker:  {one:.1f} s")
        two = throughput(2, args.deployments, args.concurrency)
        print(f"{args.deployments} webapp runs to Ready, 2 workers: {two:.1f} s")
        print(f"throughput ratio 2 workers / 1 worker: {one / two:.2f}")
    if not args.skip_coordination:
        res = coordination(args.n, args.burst, args.timeout, args.procs)
        print(
            "coordination through two serve replicas (instances alternate A/B over TCP, "
            "every ping-pong pair spans both; server figures: both replicas summed):"
        )
        coord.show(res)
        passed = res["abort_status"] == 409 and res["abort_s"] < ABORT_TARGET_S
        print(
            f"  abort raised through A → long-poll on B returns {res['abort_status']}: "
            f"{coord.ms(res['abort_s'])} after A acknowledged, {coord.ms(res['abort_sent_s'])} "
            f"after it was sent (target {coord.ms(ABORT_TARGET_S)}: {coord.verdict(passed)})"
        )
        coord.table([res])
        if not res["ok"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
