"""What isolates a `local` instance: Linux namespaces made by bubblewrap (``bwrap``).

Each instance runs in its own PID, mount and IPC namespaces, with no capabilities (even
when the service runs as root, so it cannot undo its mounts):

- PID: the instance's processes see only each other, and killing the namespace's PID 1
  ends every one of them, daemons started with ``setsid`` and a cleared environment too.
- mount: the host's filesystem, read-only, where the service home and the service user's
  home folder are empty folders. Inside them the instance sees only its own sandbox
  (writable), the folder of the servers' sockets and the run's ``server/`` folder
  (read-only: where its agent finds and reaches its server, which may change while the
  instance lives, so folders are bound, not files), and the Python the agent runs on.
  ``/tmp`` is the sandbox's ``tmp`` folder.
- the network stays the host's: instances bind ports on 127.0.0.1 and publish them.

Why bwrap rather than util-linux ``unshare``: ``unshare`` only makes the namespaces, so
the read-only root, the hidden folders, the binds and dropping capabilities would be our
own mount code running as root inside; bwrap does all of it in one exec, works without
root through user namespaces, and reports the host PID of the namespace's PID 1
(``--info-fd``), which is what ``stop`` kills.

The mounts rebuild the host's tree rather than binding ``/`` whole: every folder above a
hidden or bound path is made by bwrap in the namespace (owned by the service user), and
its other entries are bound one by one. So the agent's check that nobody else could have
placed its server's socket (every folder above it ours or root's) holds in a user
namespace too, where the host's root-owned folders would show as ``nobody``.

``SLIPSTREAM_BWRAP`` overrides where bwrap is: a path, or empty for no isolation (tests
use a missing path to run the fallback).

Example (a host whose folders are all empty, so nothing else is bound):
    >>> spec = Spec(sandbox=Path("/srv/ss/runs/r1/sb/web.1"), hidden=(Path("/srv/ss"),),
    ...             readable=(Path("/srv/ss/sockets"),))
    >>> print(" ".join(spec.mounts(lambda folder: [])).replace(" --", "\\n--"))
    --dev /dev
    --proc /proc
    --dir /srv
    --dir /srv/ss
    --bind /srv/ss/runs/r1/sb/web.1 /srv/ss/runs/r1/sb/web.1
    --ro-bind /srv/ss/sockets /srv/ss/sockets
    --bind /srv/ss/runs/r1/sb/web.1/tmp /tmp
    --remount-ro /
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BWRAP_ENV = "SLIPSTREAM_BWRAP"
# Namespaces and mounts every instance gets; the probe tries exactly these.
BASE_OPTIONS = (
    "--unshare-pid",
    "--unshare-ipc",
    "--cap-drop",
    "ALL",
    "--new-session",
)
NOT_ISOLATED = (
    "its scripts can read the service home (runs.db, every run's tokens) and the service "
    "user's files, write wherever the service user may, see every process of the host, and "
    "a daemon started with setsid and a cleared environment outlives destroy"
)


def bwrap_path(env: dict[str, str] | None = None) -> str | None:
    """The bwrap to use: ``$SLIPSTREAM_BWRAP`` when set (empty: none), else bwrap on PATH.

    Example:
        >>> bwrap_path({"SLIPSTREAM_BWRAP": ""}) is None
        True
        >>> bwrap_path({"SLIPSTREAM_BWRAP": "/opt/bin/bwrap"})
        '/opt/bin/bwrap'
    """
    env = dict(os.environ) if env is None else env
    if BWRAP_ENV in env:
        return env[BWRAP_ENV] or None
    return shutil.which("bwrap", path=env.get("PATH"))


def probe(env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """(bwrap's path, "") when instances can be isolated here, else (None, why not).

    Runs ``true`` in namespaces made with the options every instance gets, so that
    "bwrap is there but not permitted" (no user namespaces, a container without
    ``CAP_SYS_ADMIN``) is found once, before any instance starts.

    Example:
        >>> probe({"SLIPSTREAM_BWRAP": ""})
        (None, 'isolation turned off (SLIPSTREAM_BWRAP is empty)')
    """
    env = dict(os.environ) if env is None else env
    path = bwrap_path(env)
    if path is None:
        return None, missing_reason(env)
    argv = [
        path,
        *BASE_OPTIONS,
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--dir",
        "/tmp/probe",
        "--remount-ro",
        "/",
        "--",
        "/bin/true",
    ]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"cannot run bwrap at {path}: {err}"
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, f"bwrap cannot make namespaces here ({said})"
    return path, ""


def missing_reason(env: dict[str, str] | None = None) -> str:
    """Why :func:`bwrap_path` found no bwrap.

    Example:
        >>> missing_reason({"PATH": "/nowhere"})
        'bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)'
    """
    env = dict(os.environ) if env is None else env
    if env.get(BWRAP_ENV) == "":
        return f"isolation turned off ({BWRAP_ENV} is empty)"
    return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"


def not_isolated_warning(reason: str) -> str:
    """The one warning a run gets when its `local` instances run without namespaces.

    Example:
        >>> not_isolated_warning("bwrap is not installed").startswith("local instances")
        True
    """
    return f"local instances run without isolation: {reason}; {NOT_ISOLATED}"


def user_homes() -> list[Path]:
    """The service user's home folders (``$HOME`` and the password database's entry):
    where cloud credentials live (``~/.aws``, ``~/.config/openstack``, ``~/.ssh``)."""
    found = []
    for text in (os.environ.get("HOME", ""), _passwd_home()):
        if text and os.path.isabs(text) and os.path.isdir(text):
            found.append(Path(text).resolve())
    return found


def _passwd_home() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ""


def python_folders() -> list[Path]:
    """The folders the agent's Python needs: its (virtual) environment and base install."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable))}
    return sorted(p.resolve() for p in folders)


@dataclass(frozen=True)
class Spec:
    """One instance's namespace: what is hidden, what is bound, where ``/tmp`` comes from.

    ``hidden`` folders show empty; ``sandbox`` is bound writable and its ``tmp`` at
    ``/tmp``; each of ``readable`` is bound read-only when it lies in a hidden folder or
    ``/tmp`` (elsewhere it is visible already). Paths are absolute and resolved.
    """

    sandbox: Path
    hidden: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()

    def mounts(self, entries: Callable[[Path], Iterable[Path]] | None = None) -> list[str]:
        """bwrap's options building the namespace's filesystem, ancestors first.

        ``entries`` lists a host folder (``Path.iterdir`` unless given).
        """
        listing = entries or _entries
        replaced: dict[Path, list[str]] = {
            Path("/proc"): ["--proc", "/proc"],
            Path("/dev"): ["--dev", "/dev"],
            Path("/tmp"): ["--bind", str(self.sandbox / "tmp"), "/tmp"],
        }
        for folder in self.hidden:
            if folder != Path("/") and not _inside(folder, replaced):
                replaced[folder] = ["--dir", str(folder)]
        bound: dict[Path, list[str]] = {
            self.sandbox: ["--bind", str(self.sandbox), str(self.sandbox)]
        }
        for path in self.readable:
            if _inside(path, replaced) and not _inside(path, self.readable):
                bound[path] = ["--ro-bind", str(path), str(path)]
        special = {**replaced, **bound}
        # Folders above a special path that are not inside a replaced one: made anew, and
        # their other entries bound one by one.
        rebuilt = {
            parent
            for path in special
            for parent in path.parents
            if parent not in special and not _inside(parent, replaced)
        }
        ops: dict[Path, list[str]] = {**special}
        for folder in rebuilt:
            if folder != Path("/"):
                ops[folder] = ["--dir", str(folder)]
            for entry in listing(folder):
                if entry in special or entry in rebuilt:
                    continue
                if entry.is_symlink():
                    ops[entry] = ["--symlink", os.readlink(entry), str(entry)]
                else:
                    ops[entry] = ["--ro-bind-try", str(entry), str(entry)]
        argv: list[str] = []
        for path in sorted(ops, key=lambda p: p.parts):
            argv += ops[path]
        return [*argv, "--remount-ro", "/"]

    def argv(self, bwrap: str, command: Sequence[str], info_fd: int) -> list[str]:
        """The whole bwrap command line running ``command`` in this namespace."""
        return [
            bwrap,
            *BASE_OPTIONS,
            "--info-fd",
            str(info_fd),
            *self.mounts(),
            "--chdir",
            str(self.sandbox / "work"),
            "--",
            *command,
        ]


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    """Whether ``path`` is strictly below one of ``folders``."""
    return any(folder in path.parents for folder in folders)
