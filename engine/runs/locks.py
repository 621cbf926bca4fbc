"""Run locks: one process drives a run at a time, and the lock says who holds it.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "driver.lock"
    >>> with RunLock(path, "deploy"):
    ...     try:
    ...         RunLock(path, "destroy").acquire()
    ...     except RunLocked as err:
    ...         print(str(err).split(" (pid")[0])
    run is locked by deploy
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from engine.errors import SlipstreamError
from engine.files import make_dirs


class RunLocked(SlipstreamError):
    """Another process is driving this run."""


class RunLock:
    """An exclusive ``flock`` on a file that records the holder's purpose and pid."""

    def __init__(self, path: Path, purpose: str, wait_s: float = 0.0) -> None:
        self.path = path
        self.purpose = purpose
        self.wait_s = wait_s
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_s``; :class:`RunLocked` names the holder."""
        make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise RunLocked(f"run is locked by {holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.purpose} (pid {os.getpid()})".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

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
