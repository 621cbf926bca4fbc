"""A Terraform process that may outlive the process that started it.

Terraform writes its output to files, never to pipes: a pipe breaks when its reader dies,
and Terraform's next write would then kill it half way through an apply, before its state
is saved. Whoever starts Terraform in a root leaves a pid file there (:class:`PidFile`);
a later runner of that root finds a Terraform still running (:func:`leftover`), follows
its output with a :class:`FileTail`, and waits for it (or interrupts it) before running
anything of its own.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> PidFile(root).write(os.getpid(), "apply", "apply")
    >>> found = leftover(root)
    >>> (found.pid == os.getpid(), found.step)
    (True, 'apply')
    >>> PidFile(root).remove(); leftover(root) is None
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from engine.files import write_atomic

PID_FILE = "terraform.pid"


@dataclass(frozen=True, slots=True)
class Leftover:
    """A Terraform command still running in a root, started by another runner."""

    pid: int  # also its process group: Terraform runs in a session of its own
    start: str  # its start time, so a reused pid is not taken for it
    step: str
    stem: str  # its artifacts are <stem>.stdout.jsonl, <stem>.stderr.txt
    driver: int  # the process that started it

    def running(self) -> bool:
        """Whether it still runs (not a zombie, not a new process with its pid)."""
        return started_at(self.pid) == self.start


def started_at(pid: int) -> str | None:
    """The start time of a live process (clock ticks since boot), None when it is gone or
    a zombie (dead, not yet reaped: orphans are adopted by an init that may never reap).

    >>> started_at(os.getpid()) is not None
    True
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


class PidFile:
    """``terraform.pid`` in a root: pid, start time and step of the running command."""

    def __init__(self, root: Path) -> None:
        self.path = root / PID_FILE

    def write(self, pid: int, step: str, stem: str) -> None:
        doc = {"pid": pid, "start": started_at(pid), "step": step, "stem": stem}
        doc["driver"] = os.getpid()
        write_atomic(self.path, json.dumps(doc) + "\n", mode=0o600)

    def read(self) -> Leftover | None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return Leftover(
                int(doc["pid"]),
                str(doc["start"]),
                str(doc["step"]),
                str(doc["stem"]),
                int(doc["driver"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def leftover(root: Path) -> Leftover | None:
    """The Terraform command still running in ``root`` per its pid file, else None (a pid
    file whose process is gone, or whose pid now belongs to another process, is stale)."""
    found = PidFile(root).read()
    return found if found is not None and found.running() else None


def killpg(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


class FileTail:
    """Complete lines appended to a file since ``offset``, read as they come.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> _ = path.write_text('{"a": 1}\\n{"b"')
    >>> tail = FileTail(path)
    >>> tail.lines(), tail.lines(final=True)
    (['{"a": 1}\\n'], ['{"b"'])
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    @classmethod
    def from_end(cls, path: Path) -> FileTail:
        """A tail of what is appended from now on."""
        try:
            return cls(path, path.stat().st_size)
        except FileNotFoundError:
            return cls(path)

    def lines(self, final: bool = False) -> list[str]:
        """Lines completed since the last call; ``final``: the unfinished last one too."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        data = self._partial + data
        *whole, self._partial = data.split(b"\n")
        found = [line.decode("utf-8", "replace") + "\n" for line in whole]
        if final and self._partial:
            found.append(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        return found


def last_lines(path: Path, count: int = 40, limit: int = 64 * 1024) -> str:
    """The last ``count`` lines of a file (of its last ``limit`` bytes)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
            data = handle.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(lines[-count:])
