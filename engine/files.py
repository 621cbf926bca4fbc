"""Files the service writes: atomically (a temporary file, then a rename) and privately.

A service home holds secrets (agent tokens, sensitive inputs in ``runs.db``, Terraform
state), so what the engine creates is readable by its user only: files 0600 and folders
0700 unless a caller asks otherwise, and :func:`private_home` repairs a home others could
read or refuses one others could have planted files in.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> write_atomic(target, "hi\\n"); target.read_text()
    'hi\\n'
    >>> oct(target.stat().st_mode & 0o777), oct(target.parent.stat().st_mode & 0o777)
    ('0o600', '0o700')
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from engine.errors import HomeUnusable


def make_dirs(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` and its missing parents, each with ``mode`` (``mkdir -p`` gives
    the parents the umask's mode instead)."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=mode)


def write_atomic(path: Path, text: str, mode: int = 0o600, dir_mode: int = 0o700) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new file, never half."""
    write_atomic_bytes(path, text.encode("utf-8"), mode, dir_mode)


def write_atomic_bytes(path: Path, data: bytes, mode: int = 0o600, dir_mode: int = 0o700) -> None:
    """Like :func:`write_atomic` for bytes."""
    make_dirs(path.parent, dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def private_home(home: Path) -> list[str]:
    """Make sure the service home is the service user's alone; returns what was repaired.

    Creates it (0700) when missing. Refuses (:class:`HomeUnusable`) a home, or an entry at
    its top, owned by another user: they could have planted a ``clouds.yaml`` or runs.
    Makes private what others could read or write (the home, its top entries, runs.db
    and its journals), saying so.

    Example:
        >>> import tempfile
        >>> home = Path(tempfile.mkdtemp()) / "home"
        >>> private_home(home), oct(home.stat().st_mode & 0o777)
        ([], '0o700')
        >>> home.chmod(0o777)
        >>> private_home(home)
        ['the service home ... was readable or writable by others (mode 0777): made private']
    """
    try:
        make_dirs(home)
        if not os.access(home, os.W_OK):
            why = (
                "read-only file system"
                if os.statvfs(home).f_flag & os.ST_RDONLY
                else ("permission denied")
            )
            raise HomeUnusable(f"the service home {home} is not writable ({why})")
        me = os.geteuid()
        entries = [home, *sorted(home.iterdir())]
        for entry in entries:
            info = entry.lstat()
            if info.st_uid != me:
                what = "the service home" if entry == home else f"{entry.name} in the service home"
                raise HomeUnusable(
                    f"{what} {home.resolve()} belongs to uid {info.st_uid}, not to you (uid "
                    f"{me}): another user could change what it deploys; use a home of your own"
                )
        repaired = []
        for entry in entries:
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
                continue
            mode = stat.S_IMODE(info.st_mode)
            entry.chmod(mode & 0o700)
            what = "the service home" if entry == home else entry.name
            where = f" {home.resolve()}" if entry == home else ""
            repaired.append(
                f"{what}{where} was readable or writable by others (mode {mode:04o}): made private"
            )
        return repaired
    except OSError as exc:
        raise HomeUnusable(
            f"cannot use the service home {home}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(home) else "")
        ) from exc
