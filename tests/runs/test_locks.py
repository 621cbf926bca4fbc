"""Run locks: one process at a time, re-entrant inside it, the holder named."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.runs.locks import RunLock, RunLocked

HOLD = """
import sys, time
from pathlib import Path
from engine.runs.locks import RunLock
with RunLock(Path(sys.argv[1]), "serve"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_another_process_cannot_take_it_and_is_told_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "driver.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunLocked, match=rf"run is locked by serve \(pid {holder.pid}\)"):
            RunLock(path, "destroy").acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(path, "destroy"):  # free once its holder is gone
        assert RunLock.held_here(path)


def test_reentrant_across_threads_of_one_process(tmp_path: Path) -> None:
    path = tmp_path / "driver.lock"
    outer = RunLock(path, "serve")
    outer.acquire()
    taken: list[bool] = []

    def job() -> None:
        with RunLock(path, "deploy"):
            taken.append(RunLock.held_here(path))

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(5)
    assert taken == [True]
    assert RunLock.held_here(path)  # the job's release leaves the outer hold
    outer.release()
    assert not RunLock.held_here(path)
