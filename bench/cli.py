"""Start-up time of the ``slipstream`` command line: the median wall time of each command,
beside the target (0.25 s) and the machine's load average.

Measured, each in a fresh process (the console script of this Python's environment, or
``python -m engine.cli.app`` when there is none): ``slipstream --help``, ``slipstream list``
on an empty service home (a store with no runs) and on one with 50 runs, and
``slipstream status RUN``; then, for reference, ``slipstream list`` where there is no home
yet (the command line without the store) and ``python -c pass`` (the interpreter's own
start). The homes are made through the service's store API; one unmeasured run of each
command first warms the file cache. The load average is printed before and after, because
other processes on the machine slow every run. The CPU time each command used (user +
system) is printed beside its wall time: when they are close, it waited on nothing else.

Run: ``python bench/cli.py [runs]`` (default 9 runs of each command).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.service import Service  # noqa: E402
from engine.store.runstore import NewInstance, NewRun  # noqa: E402

TARGET_S = 0.25
SPEC = {
    "nodes": {
        "web": {"inputs": {}, "sensitive": [], "multiplicity": 2},
        "db": {"inputs": {}, "sensitive": ["password"], "multiplicity": 1},
    }
}


def make_home(home: Path, runs: int) -> list[str]:
    """A service home holding ``runs`` runs (each with instances, parameters and events)."""
    store = Service(home, None).store
    ids = []
    for n in range(runs):
        run_id = f"bench{n:04d}"
        store.create_run(
            NewRun(run_id, "webapp", "bench", "always", 600, json.dumps(SPEC)),
            [
                NewInstance(name, name.split(".")[0], int(name[-1]), "local", f"h{n}{name}")
                for name in ("web.1", "web.2", "db.1")
            ],
            {"ss:url.service": f"http://127.0.0.1:{8000 + n}/", "db.1:password": "secret"},
        )
        store.set_params(run_id, {"web.1:statecustom": "serving", "db.1:hostname": "db"})
        store.add_event(run_id, "state", "Initializing → Provisioning")
        ids.append(run_id)
    return ids


def command() -> list[str]:
    script = Path(sys.executable).with_name("slipstream")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli.app"]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_s(argv: list[str], home: Path, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``runs`` runs of ``argv`` (after one warm-up run)."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="bench")
    env.pop("SLIPSTREAM_DATABASE_URL", None)
    walls, cpus = [], []
    for n in range(runs + 1):
        start, cpu = time.perf_counter(), children_cpu_s()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        elapsed, used = time.perf_counter() - start, children_cpu_s() - cpu
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
        if n:
            walls.append(elapsed)
            cpus.append(used)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    cli = command()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        empty, full = Path(tmp, "empty"), Path(tmp, "full")
        make_home(empty, 0)
        run_id = make_home(full, 50)[-1]
        cases = [
            ("slipstream --help", [*cli, "--help"], empty),
            ("slipstream list (empty home)", [*cli, "list"], empty),
            ("slipstream list (50 runs)", [*cli, "list"], full),
            ("slipstream status RUN", [*cli, "status", run_id], full),
            ("slipstream list (no home yet)", [*cli, "list"], Path(tmp, "nowhere")),
            ("python -c pass", [sys.executable, "-c", "pass"], empty),
        ]
        print(f"command: {' '.join(cli)}; median of {runs} runs; target {TARGET_S:.2f} s")
        print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        for label, argv, home in cases:
            wall, cpu = median_s(argv, home, runs)
            verdict = "PASS" if wall < TARGET_S else "FAIL"
            print(f"  {label:<30} {wall:6.3f} s  {verdict}  (CPU {cpu:.3f} s)", flush=True)
        print("load average (1, 5, 15 min) after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
