"""Run store figures: import time, and parameter writes from many threads (SQLite).

Prints, does not assert (figures vary with the machine and its load):

- wall time of ``python -c "import engine.store.runstore"``, median of 7 fresh processes;
- 5,000 ``set_params`` calls from 500 threads, each waiting for its own commit;
- 5,000 ``put_params`` calls from 500 threads, each thread submitting its 10 writes at once
  and then waiting for their futures (the non-blocking path the async server uses).

Run: ``.venv/bin/python bench/store.py [--threads 500] [--writes 5000]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.store.runstore import NewRun, RunStore  # noqa: E402


def import_seconds(runs: int = 7) -> float:
    """Median wall time of a fresh interpreter importing the run store."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import engine.store.runstore"], cwd=REPO, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def storm(threads: int, per_thread: int, work: Callable[[RunStore, int], None]) -> float:
    """Operations per second of ``threads`` threads each calling ``work`` ``per_thread`` times."""
    with tempfile.TemporaryDirectory(prefix="ss-bench-store-") as tmp:
        store = RunStore.open(f"sqlite:///{tmp}/runs.db")
        store.create_run(NewRun("r1", "bench", "bench", "never", 60, "{}"), [], {})
        ready = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def body(n: int) -> None:
            ready.wait()
            try:
                work(store, n)
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=body, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        ready.wait()
        start = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        stored = len(store.params("r1"))
        if stored != threads * per_thread:
            raise SystemExit(f"lost writes: {stored} stored of {threads * per_thread}")
    return threads * per_thread / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=500)
    parser.add_argument("--writes", type=int, default=5000)
    args = parser.parse_args()
    per_thread = max(1, args.writes // args.threads)

    def blocking(store: RunStore, n: int) -> None:
        for i in range(per_thread):
            store.set_params("r1", {f"w{n}.{i}": str(i)})

    def nowait(store: RunStore, n: int) -> None:
        futures: list[Future[None]] = [
            store.put_params("r1", {f"w{n}.{i}": str(i)}) for i in range(per_thread)
        ]
        for future in futures:
            future.result()

    print(f"import engine.store.runstore: {import_seconds() * 1000:.0f} ms (median of 7)")
    total = args.threads * per_thread
    print(
        f"set_params, {total} from {args.threads} threads: "
        f"{storm(args.threads, per_thread, blocking):,.0f} ops/s"
    )
    print(
        f"put_params, {total} from {args.threads} threads: "
        f"{storm(args.threads, per_thread, nowait):,.0f} ops/s"
    )


if __name__ == "__main__":
    main()
