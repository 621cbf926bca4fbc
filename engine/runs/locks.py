"""Run locks: one process drives a run at a time, and the lock says who holds it.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "driver.lock"
    >>> with RunLock(path, "serve"):
    ...     with RunLock(path, "destroy"):  # the same process takes it again
    ...         RunLock.held_here(path)
    True
    >>> RunLock.held_here(path)
    False
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from engine.errors import SlipstreamError
from engine.files import make_dirs


class RunLocked(SlipstreamError):
    """Another process is driving this run."""


class RunLock:
    """An exclusive ``flock`` on a file that records the holder's purpose and pid.

    Re-entrant within a process: the resident server holds the lock of every run it
    serves, and its jobs (driving, terminating) take it again without waiting for
    themselves; another process still finds it taken. The process serialises its own jobs.
    """

    _held: ClassVar[dict[str, list[int]]] = {}  # path → [fd, count], for this process
    _guard = threading.Lock()

    def __init__(self, path: Path, purpose: str, wait_s: float = 0.0) -> None:
        self.path = path
        self.purpose = purpose
        self.wait_s = wait_s
        self._key: str | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_s``; :class:`RunLocked` names the holder."""
        make_dirs(self.path.parent)
        key = str(self.path.resolve())
        deadline = time.monotonic() + self.wait_s
        while True:
            with RunLock._guard:
                held = RunLock._held.get(key)
                if held is not None:
                    held[1] += 1
                    self._key = key
                    return
                holder = self._try(key)
                if holder is None:
                    self._key = key
                    return
            if time.monotonic() >= deadline:
                raise RunLocked(f"run is locked by {holder}")
            time.sleep(0.2)

    def _try(self, key: str) -> str | None:
        """Take the file lock now (None), or say who holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.purpose} (pid {os.getpid()})".encode())
        RunLock._held[key] = [fd, 1]
        return None

    def holder(self) -> str:
        """Who holds the lock (``purpose (pid N)``) as its file says; empty when free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return ""
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return ""
        finally:
            os.close(fd)

    @classmethod
    def held_here(cls, path: Path) -> bool:
        """Whether this process holds the lock at ``path``."""
        with cls._guard:
            return str(path.resolve()) in cls._held

    def release(self) -> None:
        if self._key is None:
            return
        with RunLock._guard:
            held = RunLock._held[self._key]
            held[1] -= 1
            if held[1] == 0:
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])
                del RunLock._held[self._key]
        self._key = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
