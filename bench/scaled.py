"""The scaled mode's figures (issue 15): job throughput with 1 and 2 workers, and the
coordination benchmark's instances through two ``serve`` replicas on PostgreSQL.

1. Throughput: ``--deployments`` runs of ``webapp`` on ``local`` submitted at once through
   one replica to 1 worker, then (a new schema) to 2 workers, each worker driving
   ``--concurrency`` runs at once; time from the first submit until every run is Ready,
   and the ratio. Every run is terminated afterwards.
2. Coordination: N simulated instances (bench/coordination.py's, one thread each in a
   separate process) go through every barrier and exchange parameters; instances alternate
   between replica A and replica B, and every ping-pong pair spans both, so each wake-up
   crosses processes through LISTEN/NOTIFY. The bench process plays the engine (it sets
   Provisioning and arms its barrier, as a worker does once the clouds are applied); the
   later states are moved by whichever process sees the last vote. State times are when
   the bench process learned of each state (within a NOTIFY of the move).
   Also: ``ss:abort`` raised through replica A → a long-poll parked on replica B returns
   (target 100 ms).

Needs the machine's PostgreSQL (127.0.0.1:5432, database ``test``); each part uses a
schema of its own, dropped afterwards.

Run: ``python bench/scaled.py [--deployments 20] [--n 500] [--skip-throughput]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
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


def scaled_instances(cfg: dict[str, Any], conn: Any) -> None:
    """bench/coordination.py's instances, each talking to its own replica's port."""
    names: list[str] = cfg["names"]
    shared: dict[str, Any] = {
        "events": {n: threading.Event() for n in names},
        "burst_barrier": threading.Barrier(len(names), timeout=60),
    }
    agents = []
    for name in names:
        agent = coord.Agent(
            "127.0.0.1", cfg["ports"][name], cfg["run_id"], name, cfg["tokens"][name]
        )
        agent.call("GET", "/state")
        agents.append(agent)
    threads = [
        threading.Thread(target=coord.instance_main, args=(a, cfg, shared), daemon=True)
        for a in agents
    ]
    for t in threads:
        t.start()
    cpu = time.process_time()
    conn.send(("connected", len(agents)))
    for t in threads:
        t.join(max(0.0, cfg["deadline"] + cfg["burst"] + 30 - time.monotonic()))
    results = []
    for a in agents:
        a.rec.update(
            param_ops=a.param_ops, requests=a.requests, reconnects=a.reconnects, connects=a.connects
        )
        results.append(a.rec)
        a.conn.close()
    conn.send(("results", {"instances": results, "cpu": time.process_time() - cpu}))
    conn.close()


def coordination(n: int, burst: float, timeout: float) -> dict[str, Any]:
    from engine.compile.runspec import instance_names
    from engine.coordination.coordinator import Coordinator
    from engine.coordination.hub import Hub
    from engine.coordination.replicas import Replicas
    from engine.recipes.clouds import CloudsConfig
    from engine.recipes.loader import RecipeLoader
    from engine.runs.launcher import token_file
    from engine.runs.manager import RunManager
    from engine.store.runstore import RunStore
    from engine.terraform.binary import TerraformExe

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
            run_id = manager.create(dep, clouds, "bench")
            manager.release(run_id)
            names = instance_names(coordinator.spec(run_id))
            tokens = {
                name: token_file(cluster.home, run_id, name).read_text().strip() for name in names
            }
            ports = {}
            for i, name in enumerate(names):
                url = cluster.replicas[i % 2].url
                ports[name] = int(url.rsplit(":", 1)[1])
            partners: dict[str, tuple[str, bool]] = {}
            for a, b in zip(names[0::2], names[1::2], strict=False):
                partners[a], partners[b] = (b, True), (a, False)
            peers = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
            cfg = {
                "n": n,
                "run_id": run_id,
                "names": names,
                "tokens": tokens,
                "ports": ports,
                "partners": partners,
                "peers": peers,
                "burst": burst,
                "deadline": time.monotonic() + timeout,
            }
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=scaled_instances, args=(cfg, child), daemon=True)
            proc.start()
            child.close()
            kind, _ = parent.recv()
            assert kind == "connected"
            set_at: dict[str, float] = {}
            start = time.monotonic()
            coordinator.set_state(run_id, "Provisioning", expect="Initializing")
            set_at["Provisioning"] = time.monotonic()
            coordinator.arm(run_id, "Provisioning")
            state, ok = "Provisioning", True
            while state != "Ready":
                if time.monotonic() > cfg["deadline"]:
                    coordinator.abort(run_id, "bench: timeout")
                    ok = False
                    break
                coordinator.wait_change(run_id, state, 0.5)
                now_state, abort = coordinator.flags(run_id)
                if abort is not None:
                    ok = False
                    break
                if now_state != state:
                    state = now_state
                    set_at[state] = time.monotonic()
            total = time.monotonic() - start
            kind, finished = parent.recv()
            proc.join(10)
            run = store.get_run(run_id)
            abort_s = abort_across(cluster, run_id, tokens, names)
            res = coord.analyse(
                n, ok, total, set_at, finished["instances"], run.abort_message if run else None
            )
            res.update(overflows=0, cpu=((0.0, 0.0), finished["cpu"], False), db_connects=0)
            res["abort_s"] = abort_s
            return res
        finally:
            if replicas is not None:
                replicas.stop()
            store.close()
            cluster.stop()


def abort_across(cluster: Cluster, run_id: str, tokens: dict[str, str], names: list[str]) -> float:
    """Seconds from an abort acknowledged by replica A to the return of a read of an unset
    key parked on replica B."""
    import http.client
    import json

    a, b = cluster.replicas
    got: list[float] = []

    def parked() -> None:
        conn = http.client.HTTPConnection(b.url.removeprefix("http://"), timeout=60)
        headers = {"Authorization": f"Bearer {tokens[names[1]]}"}
        conn.request("GET", f"/agent/v1/runs/{run_id}/params/url.never?wait=30", None, headers)
        conn.getresponse().read()
        got.append(time.monotonic())

    reader = threading.Thread(target=parked)
    reader.start()
    time.sleep(1.0)
    conn = http.client.HTTPConnection(a.url.removeprefix("http://"), timeout=60)
    body = json.dumps({"message": "bench: abort across replicas"}).encode()
    headers = {"Authorization": f"Bearer {tokens[names[0]]}", "Content-Type": "application/json"}
    conn.request("POST", f"/agent/v1/runs/{run_id}/abort", body, headers)
    conn.getresponse().read()
    raised = time.monotonic()
    reader.join(40)
    return got[0] - raised if got else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="runs per worker at once")
    parser.add_argument("--n", type=int, default=500, help="instances of the coordination run")
    parser.add_argument("--burst", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0)
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
        res = coordination(args.n, args.burst, args.timeout)
        print("coordination through two serve replicas (instances alternate A/B):")
        coord.show(res)
        verdict = "PASS" if res["abort_s"] < ABORT_TARGET_S else "FAIL"
        print(
            f"  abort raised through A → long-poll on B returns: {coord.ms(res['abort_s'])}"
            f" (target {coord.ms(ABORT_TARGET_S)}: {verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
