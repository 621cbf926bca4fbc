"""What one `local` instance costs to start and stop: the launcher Terraform runs, the
time until the agent is up (its pid file written), the memory of the instance's own
processes (proportional set size, with no script running), and `stop`.

Each instance is started as Terraform starts it (``python -m engine.runs.launcher``, a
new process) against a server that accepts connections and never answers, so the agent
stays up waiting for its recipe. Runs isolated (bwrap) and plain (``SLIPSTREAM_BWRAP``
empty) in turn. ``--repo DIR`` times another checkout's launcher (an older one has no
isolation: both rows are then the same). Last, the namespace's own set-up: ``/bin/true``
run alone and in bwrap with an instance's mounts, interleaved (the least noisy number
here: the rows above move with the load of the machine).

Run: ``python bench/launcher.py [--instances N] [--repo DIR]`` (default 10 instances).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def marked(run_id: str, instance: str) -> list[int]:
    wanted = {f"SLIPSTREAM_RUN_ID={run_id}".encode(), f"SLIPSTREAM_INSTANCE={instance}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def pss_kib(pids: list[int]) -> int:
    """Memory of these processes and their descendants, counted once each."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    total = 0
    for pid in seen:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def one_round(repo: Path, bwrap: str | None, count: int) -> dict[str, float]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}\n"
    starts, ups, mems, stops = [], [], [], []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        home = Path(tmp) / "home"
        run_id = "bench"
        run_dir = home / "runs" / run_id
        for path in (run_dir / "server.url", run_dir / "server" / "server.url"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(url)
        env = dict(os.environ, PYTHONPATH=str(repo), SLIPSTREAM_RUN_ID=run_id)
        if bwrap is not None:
            env["SLIPSTREAM_BWRAP"] = bwrap
        names = [f"n.{i}" for i in range(1, count + 1)]
        for name in names:
            (run_dir / "tokens").mkdir(exist_ok=True)
            (run_dir / "tokens" / name).write_text("t" * 43 + "\n")
            sandbox = run_dir / "sandboxes" / name
            env.update(SLIPSTREAM_INSTANCE=name, SLIPSTREAM_SANDBOX=str(sandbox))
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "engine.runs.launcher", "--home", str(home), "start"],
                cwd=repo,
                env=env,
                check=True,
                stderr=subprocess.DEVNULL,  # the plain round's warning, once per instance
            )
            starts.append(time.perf_counter() - began)
            pid_file = sandbox / "work" / "agent.pid"
            while not pid_file.exists():
                if time.perf_counter() - began > 30:
                    raise SystemExit(f"{name}: agent not up; see {sandbox}/agent.out")
                time.sleep(0.002)
            ups.append(time.perf_counter() - began)
        time.sleep(0.5)  # let every agent settle into its first request
        for name in names:
            mems.append(pss_kib(marked(run_id, name)) / 1024)
        for name in names:
            sandbox = run_dir / "sandboxes" / name
            env.update(SLIPSTREAM_INSTANCE=name, SLIPSTREAM_SANDBOX=str(sandbox))
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "engine.runs.launcher", "--home", str(home), "stop"],
                cwd=repo,
                env=env,
                check=True,
            )
            stops.append(time.perf_counter() - began)
            if marked(run_id, name):
                raise SystemExit(f"{name}: processes left after stop")
    listener.close()
    return {
        "launcher start (s)": statistics.median(starts),
        "agent up (s)": statistics.median(ups),
        "memory (MiB)": statistics.median(mems),
        "stop (s)": statistics.median(stops),
    }


def namespace_setup(rounds: int = 40) -> tuple[float, float]:
    """Median seconds to run ``/bin/true`` alone and in an instance's namespace (bwrap
    with the mounts the launcher makes), interleaved so that load shifts hit both."""
    sys.path.insert(0, str(REPO))
    from engine.runs import isolation

    bwrap = isolation.bwrap_path()
    if bwrap is None:
        raise SystemExit("bwrap is not installed")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        home = Path(tmp) / "home"
        sandbox = home / "runs" / "bench" / "sandboxes" / "n.1"
        for folder in (sandbox / "work", sandbox / "tmp", home / "sockets"):
            folder.mkdir(parents=True)
        spec = isolation.Spec(
            sandbox=sandbox,
            hidden=(home, *isolation.user_homes()),
            readable=(home / "sockets", *isolation.python_folders()),
        )
        plain, isolated = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            subprocess.run(["/bin/true"], check=True)
            plain.append(time.perf_counter() - began)
            began = time.perf_counter()
            argv = spec.argv(bwrap, ["/bin/true"], 1)  # info to stdout: discarded
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            isolated.append(time.perf_counter() - began)
    return statistics.median(plain), statistics.median(isolated)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    rows = {
        "isolated (bwrap)": one_round(args.repo.resolve(), None, args.instances),
        "plain (no bwrap)": one_round(args.repo.resolve(), "", args.instances),
    }
    print(f"{args.instances} instances, medians, launcher of {args.repo.resolve()}")
    columns = list(next(iter(rows.values())))
    print(f"{'':18}" + "".join(f"{c:>20}" for c in columns))
    for label, row in rows.items():
        print(f"{label:18}" + "".join(f"{row[c]:>20.3f}" for c in columns))
    alone, inside = namespace_setup()
    print(
        f"/bin/true: {alone * 1000:.1f} ms alone, {inside * 1000:.1f} ms in an instance's "
        f"namespace (bwrap and its mounts: +{(inside - alone) * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
