"""Coordination at scale: N simulated instances go through every barrier of a run over the
real agent API while exchanging runtime parameters (DESIGN sections 4, 5 and 8; issue 7).

The server side is the real thing, in this process: a SQLite RunStore in a temporary
home, the Hub, the Coordinator, the agent API app (``webhooks.app.create_app``) on the
real ``HttpServer`` (uvicorn + httptools, TCP on loopback, or its Unix socket with
``--unix``), and ``RunManager.drive`` taking the run Provisioning → Executing →
SendingReports → Ready, with only Terraform left out (``_apply_all`` does nothing: the
clouds count as applied at once). The instances are asyncio clients in other processes
(``bench/simagents.py``, one keep-alive HTTP/1.1 connection each; ``--procs``), so
N=5000 is feasible; what each instance does is described there.

Measured: time through all barriers (Provisioning set → Ready seen by every instance)
and per phase; set-to-wake latency of parameters (the 499-way fan-out and pairwise
ping-pong: waiter's GET returned − setter's PUT acknowledged; also from when the PUT was
sent, since the server may answer the woken before the setter); barrier release (last
vote sent → next state seen by every instance); sustained parameter operations after
Ready (``--burst`` seconds of set/get by every instance); the peak RSS and the CPU of the
server process. ``--flood N``: another process holds N idle TCP connections (half stopped
mid request line) while the run goes, and drops them at Ready; the run must still meet
the targets, and the server must let go of every flood connection.

Run: ``python bench/coordination.py [500,5000] [--burst 3] [--flood 2000] [--unix]
[--procs K] [--timeout 120] [--profile FILE]``. Prints the issue's target table with
PASS/FAIL and the load average. A run not done by ``--timeout`` is aborted by the
manager (it names who has not voted), which ends every instance.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SIMAGENTS = Path(__file__).resolve().parent / "simagents.py"

STATES = ("Provisioning", "Executing", "SendingReports", "Ready")
TARGET_500_S = 2.0
TARGET_5000_S = 30.0
TARGET_P99_S = 0.050
TARGET_RELEASE_S = 0.100
TARGET_OPS = 5000.0
TARGET_RSS_MIB = 2048.0


# -- the run's recipes --------------------------------------------------------------------


def write_recipes(root: Path, n: int, timeout_s: int) -> Path:
    """``origin`` (server x1, publishes url) and ``peer`` (client x n-1, waits on it)."""
    (root / "origin.yaml").write_text(
        "kind: component\nname: origin\nimage: debian\noutputs:\n  url: {}\n  ready: {}\n",
        encoding="utf-8",
    )
    (root / "peer.yaml").write_text(
        "kind: component\nname: peer\nimage: debian\n"
        "inputs:\n  upstream: {description: where the server listens}\n"
        "outputs:\n  url: {}\n  ready: {}\n",
        encoding="utf-8",
    )
    path = root / "bench.yaml"
    path.write_text(
        f"kind: deployment\nname: coordination-bench\nkeep_running: always\n"
        f"timeout: {timeout_s}s\nnodes:\n"
        "  server:\n    component: origin\n    cloud: local\n"
        f"  client:\n    component: peer\n    multiplicity: {n - 1}\n    cloud: local\n"
        "    inputs:\n      upstream: {from: server:url}\n",
        encoding="utf-8",
    )
    return path


# -- the server process's own figures -----------------------------------------------------


def proc_status(field: str) -> float:
    """A ``/proc/self/status`` figure in MiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# -- the instances' processes ---------------------------------------------------------------


class Crowd:
    """``procs`` processes of simulated instances (``bench/simagents.py``); pairs of the
    ping-pong stay in one process."""

    def __init__(self, cfg: dict[str, Any], procs: int) -> None:
        names = cfg["names"]
        per = math.ceil(len(names) / procs / 2) * 2
        self.procs = []
        for start in range(0, len(names), per):
            mine = dict(cfg, names=names[start : start + per])
            proc = subprocess.Popen(
                [sys.executable, str(SIMAGENTS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(mine) + "\n")
            proc.stdin.flush()
            self.procs.append(proc)

    def wait_connected(self) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "connected":
                raise SystemExit(f"instances process said {line!r} (exit {proc.wait()})")

    def results(self) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        cpu = 0.0
        for proc in self.procs:
            out, _ = proc.communicate()
            if proc.returncode != 0 or not out.strip():
                raise SystemExit(f"instances process exited {proc.returncode}")
            doc = json.loads(out.strip().splitlines()[-1])
            records += doc["instances"]
            cpu += doc["cpu"]
        return {"instances": records, "cpu": cpu}


class Flood:
    """Another process holding ``count`` idle TCP connections to the server."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SIMAGENTS), "flood", host, str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.opened = int(self.proc.stdout.readline().split()[-1] or 0)

    def drop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


# -- one run --------------------------------------------------------------------------------


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from engine.compile.runspec import instance_names
    from engine.coordination.hub import Hub
    from engine.recipes.clouds import CloudsConfig
    from engine.recipes.loader import RecipeLoader
    from engine.runs import manager as manager_module
    from engine.runs.launcher import token_file
    from engine.runs.manager import RunManager
    from engine.store.runstore import RunStore
    from engine.terraform.binary import TerraformExe
    from webhooks.app import create_app
    from webhooks.server import HttpServer

    if n < 2:
        raise SystemExit("N must be at least 2 (one server, N-1 clients)")
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        root, home = Path(tmp) / "recipes", Path(tmp) / "home"
        root.mkdir()
        clouds = CloudsConfig.default()
        dep = RecipeLoader(root, clouds).deployment(
            write_recipes(root, n, int(args.timeout)), require_values=True
        )
        store = RunStore.open(f"sqlite:///{home}/runs.db")
        hub = Hub()
        # Terraform is never started: the clouds count as applied as soon as asked.
        manager = RunManager(home, store, hub, TerraformExe(["false"], "bench"))
        manager._apply_all = lambda run_id: None  # type: ignore[method-assign]
        # Simulated instances take no memory: the check for real local processes is off.
        manager_module.check_local_capacity = lambda instances, available: None  # type: ignore[attr-defined]
        run_id = manager.create(dep, clouds, "bench")
        coordinator = manager.coordinator
        names = instance_names(coordinator.spec(run_id))
        tokens = {
            name: token_file(home, run_id, name).read_text(encoding="utf-8").strip()
            for name in names
        }
        # Ping-pong pairs: (server.1, client.1), (client.2, client.3)…; the first waits
        # first. Burst peers: the next instance.
        partners: dict[str, tuple[str, bool]] = {}
        for a, b in zip(names[0::2], names[1::2], strict=False):
            partners[a], partners[b] = (b, True), (a, False)
        peers = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}

        server = HttpServer(
            create_app(home, coordinator),
            unix=home / "sockets" / "agents.sock" if args.unix else None,
            tcp=("127.0.0.1", 0),
            on_loop=hub.attach,
        ).start()
        fds_before = open_fds()
        host, port = server.tcp_url.removeprefix("http://").rsplit(":", 1)
        target = f"unix:{server.unix}" if args.unix else f"tcp:{host}:{port}"
        flood = Flood(host, int(port), args.flood) if args.flood else None
        procs = args.procs or (1 if n <= 1000 else 2)
        crowd = Crowd(
            {
                "target": target,
                "run_id": run_id,
                "n": n,
                "names": names,
                "tokens": tokens,
                "partners": partners,
                "peers": peers,
                "burst": args.burst,
                "deadline": time.monotonic() + args.timeout,
            },
            procs,
        )
        crowd.wait_connected()
        fds_connected = open_fds()

        profiler = start_profile(args.profile, server.loop)
        load_at_start = load()
        cpu = os.times()
        start = time.monotonic()
        state = manager.drive(run_id)  # returns at Ready (or once aborted)
        drove = time.monotonic() - start
        now = os.times()
        stop_profile(profiler, args.profile, n)
        server_cpu = now.user - cpu.user + now.system - cpu.system
        if flood is not None:
            flood.drop()
        finished = crowd.results()
        after = os.times()
        burst_cpu = after.user - now.user + after.system - now.system
        rss, peak = proc_status("VmRSS"), proc_status("VmHWM")
        time.sleep(0.5)  # the server closes what the instances and the flood closed
        fds_after = open_fds()
        abort = coordinator.flags(run_id)[1]
        server.stop()
        store.close()
    res = analyse(n, start, finished["instances"])
    res.update(
        ok=res["ok"] and state == "Ready" and abort is None,
        state=state,
        abort=abort,
        drove=drove,
        server_cpu=server_cpu,
        burst_cpu=burst_cpu,
        client_cpu=finished["cpu"],
        procs=procs,
        rss=rss,
        peak=peak,
        fds=(fds_before, fds_connected, fds_after),
        flood=flood.opened if flood else 0,
        load=load_at_start,
    )
    return res


def start_profile(path: str | None, loop: Any) -> Any:
    """cProfile of the server's event-loop thread (uvicorn, the app, the coordinator),
    turned on by a callback on that thread."""
    if not path or loop is None:
        return None
    import cProfile

    profiler = cProfile.Profile()
    done = threading.Event()

    def on() -> None:
        profiler.enable()
        done.set()

    loop.call_soon_threadsafe(on)
    done.wait(5)
    return (profiler, loop)


def stop_profile(handle: Any, path: str | None, n: int) -> None:
    if handle is None or not path:
        return
    import pstats

    profiler, loop = handle
    done = threading.Event()

    def off() -> None:
        profiler.disable()
        done.set()

    loop.call_soon_threadsafe(off)
    done.wait(5)
    out = f"{path}.{n}.pstat"
    profiler.dump_stats(out)
    stats = pstats.Stats(out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# -- figures --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"n={len(values)} p50 {ms(pct(values, 0.5))}, p90 {ms(pct(values, 0.9))}, "
        f"p99 {ms(pct(values, 0.99))}, max {ms(max(values))}"
    )


def analyse(n: int, start: float, results: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {r["name"]: r for r in results}
    server = by_name.get("server.1", {"put": {}, "getall": None})
    fanout, pingpong, from_sent = [], [], []
    server_put = server["put"].get("url")
    for r in results:
        got = r["get"]
        if "upstream" in got and server_put:
            fanout.append(got["upstream"][1] - server_put[1])
            from_sent.append(got["upstream"][1] - server_put[0])
        for key, (_, returned) in got.items():
            if key.endswith(":ready"):
                setter = by_name[key.split(":")[0]]["put"].get("ready")
                if setter:
                    pingpong.append(returned - setter[1])
                    from_sent.append(returned - setter[0])
    everyone = len(results) == n
    all_seen = {
        s: max(r["seen"][s] for r in results)
        for s in STATES
        if everyone and all(s in r["seen"] for r in results)
    }
    phases, release = {}, {}
    for s, nxt in itertools.pairwise(STATES):
        if nxt in all_seen:
            phases[s] = all_seen[nxt] - (start if s == "Provisioning" else all_seen[s])
            votes = [r["voted"][s][0] for r in results if s in r["voted"]]
            if len(votes) == n:
                release[s] = all_seen[nxt] - max(votes)
    getall = []
    if server["getall"]:
        urls = [
            r["put"]["url"][1] for r in results if r["name"] != "server.1" and "url" in r["put"]
        ]
        if urls:
            getall.append(server["getall"][1] - max(urls))
    spans = [r["burst_span"] for r in results if "burst_span" in r]
    burst_ops = sum(r["burst_ops"] for r in results)
    burst_s = (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else 0.0
    errors = [f"{r['name']}: {r['error']}" for r in results if r["error"]]
    return {
        "n": n,
        "ok": everyone and not errors and "Ready" in all_seen,
        "total": all_seen["Ready"] - start if "Ready" in all_seen else math.inf,
        "phases": phases,
        "release": release,
        "wake": fanout + pingpong,
        "fanout": fanout,
        "pingpong": pingpong,
        "from_sent": from_sent,
        "getall": getall,
        "param_ops": sum(r["param_ops"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "connects": sum(r["connects"] for r in results),
        "burst_ops": burst_ops,
        "burst_s": burst_s,
        "rate": burst_ops / burst_s if burst_s else math.nan,
        "errors": errors,
        "burst_errors": [f"{r['name']}: {r['burst_error']}" for r in results if "burst_error" in r],
        "why": [w for r in results for w in r.get("why", [])],
    }


def show(res: dict[str, Any]) -> None:
    n = res["n"]
    print(
        f"N={n}: server x1, client x{n - 1} in {res['procs']} process(es); run "
        f"{'completed' if res['ok'] else 'FAILED'} ({res['state']}); load at start {res['load']}"
    )
    if res["abort"]:
        print(f"  abort: {res['abort'][:300]}")
    causes: dict[str, int] = {}
    for line in res["why"]:
        causes[line] = causes.get(line, 0) + 1
    for line, count in sorted(causes.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  retried {count}x: {line[:200]}")
    for line in res["errors"][:5]:
        print(f"  error: {line[:300]}")
    if len(res["errors"]) > 5:
        print(f"  … {len(res['errors']) - 5} more errors")
    print(f"  through all barriers (Provisioning set → Ready seen by all): {res['total']:.2f} s")
    print(
        "  phases (entered → next state seen by all): "
        + ", ".join(f"{s} {ms(t)}" for s, t in res["phases"].items())
    )
    print(
        "  barrier release (last vote sent → next state seen by all): "
        + ", ".join(f"{s} {ms(t)}" for s, t in res["release"].items())
    )
    print(f"  set-to-wake, parameters: {spread(res['wake'])}")
    print(f"    fan-out ({n - 1} clients on server.1:url): {spread(res['fanout'])}")
    print(f"    ping-pong (pairs, `:ready`):          {spread(res['pingpong'])}")
    print(f"    both, from when the PUT was sent:     {spread(res['from_sent'])}")
    if res["getall"]:
        print(f"    ss-get-all client url (last url set → returned): {ms(res['getall'][0])}")
    print(
        f"  requests: {res['requests']} over {res['connects']} connections "
        f"(parameter ops in the run {res['param_ops']})"
    )
    if res["burst_s"]:
        print(
            f"  sustained parameter ops (all {n} set/get, no waits): {res['burst_ops']} in "
            f"{res['burst_s']:.2f} s = {res['rate']:.0f} ops/s; server CPU "
            f"{1e6 * res['burst_cpu'] / max(1, res['burst_ops']):.0f} µs per op"
        )
    for line in res["burst_errors"][:3]:
        print(f"  burst error: {line[:200]}")
    before, connected, after = res["fds"]
    print(
        f"  server process: CPU {res['server_cpu']:.2f} s during the run (instances "
        f"{res['client_cpu']:.2f} s); RSS {res['rss']:.0f} MiB, peak {res['peak']:.0f} MiB; "
        f"fds {before} before, {connected} with the instances"
        + (f" and {res['flood']} flood connections" if res["flood"] else "")
        + f", {after} after"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(done: list[dict[str, Any]]) -> None:
    """The issue's target table, for the sizes measured."""
    by_n = {res["n"]: res for res in done}
    small = by_n.get(500) or min(done, key=lambda r: r["n"])
    big = by_n.get(5000) or (max(done, key=lambda r: r["n"]) if len(done) > 1 else None)
    ns = small["n"]
    rows = [
        (f"{ns} instances through all barriers", f"{small['total']:.2f} s", "< 2 s",
         small["ok"] and small["total"] < TARGET_500_S),
        (f"wake-up p99 at N={ns}, the {ns - 1}-way fan-out included",
         ms(pct(small["wake"], 0.99)), "< 50 ms", pct(small["wake"], 0.99) < TARGET_P99_S),
        ("barrier release (last vote → next state seen by all)",
         ms(max(small["release"].values(), default=math.inf)), "< 100 ms",
         max(small["release"].values(), default=math.inf) < TARGET_RELEASE_S),
        ("sustained parameter operations", f"{small['rate']:.0f}/s", "> 5,000/s",
         small["rate"] > TARGET_OPS),
    ]  # fmt: skip
    if big is not None:
        nb = big["n"]
        rows.append(
            (
                f"{nb} simulated instances through all barriers",
                f"{big['total']:.2f} s, peak RSS {big['peak']:.0f} MiB",
                "< 30 s, < 2 GiB",
                big["ok"] and big["total"] < TARGET_5000_S and big["peak"] < TARGET_RSS_MIB,
            )
        )
        rows.append((f"wake-up p99 at N={nb}", ms(pct(big["wake"], 0.99)), "(no target)", None))
    flood = max(res["flood"] for res in done)
    print()
    print(
        f"| measure (issue 7){f', during a flood of {flood} idle connections' if flood else ''} "
        "| measured | target | |"
    )
    print("|---|---|---|---|")
    for label, value, goal, passed in rows:
        mark = "" if passed is None else verdict(bool(passed))
        print(f"| {label} | {value} | {goal} | {mark} |")
    print(
        "| one `ss-get`, `slipstream --help`/`list`, `deploy webapp` | see bench/deploy.py, "
        "bench/cli.py | | |"
    )
    print(f"load average (1, 5, 15 min) at the end: {load()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="?", default="500", help="N values, e.g. 500,5000")
    parser.add_argument("--burst", type=float, default=3.0, help="seconds of set/get after Ready")
    parser.add_argument("--flood", type=int, default=0, help="idle TCP connections held meanwhile")
    parser.add_argument("--unix", action="store_true", help="instances over the Unix socket")
    parser.add_argument("--procs", type=int, default=0, help="instance processes (default: auto)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of one run, seconds")
    parser.add_argument("--profile", metavar="PREFIX", help="cProfile the server loop: PREFIX.N")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()} {platform.system()}, python "
        f"{platform.python_version()}; load average {load()}; instances over "
        f"{'the Unix socket' if args.unix else 'TCP loopback'}"
        + (f"; flood of {args.flood} idle TCP connections" if args.flood else "")
    )
    done = []
    for n in sizes:
        res = run_one(n, args)
        show(res)
        done.append(res)
        sys.stdout.flush()
    table(done)
    return 0 if all(res["ok"] for res in done) else 1


if __name__ == "__main__":
    sys.exit(main())
