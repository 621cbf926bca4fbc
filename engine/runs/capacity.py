"""Whether this host can take a run's `local` instances: each is a process group of its
own (the agent, a Python interpreter, and what its scripts start), about
:data:`LOCAL_INSTANCE_MIB` of memory before its scripts do anything.

Example:
    >>> check_local_capacity(3, available=1024)
    >>> check_local_capacity(100, available=1024)
    Traceback (most recent call last):
    ...
    engine.errors.CloudError: `local` cannot take 100 instances: each needs about 24 MiB, \
2.3 GiB in all, and this host has 1.0 GiB of memory available
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import CloudError

#: What one idle `local` instance costs (its agent's resident memory, measured).
LOCAL_INSTANCE_MIB = 24
MEMINFO = Path("/proc/meminfo")


def available_mib() -> int | None:
    """The host's available memory (``MemAvailable``) in MiB, None where it is unknown."""
    try:
        for line in MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_local_capacity(instances: int, available: int | None) -> None:
    """Raise :class:`CloudError` when ``instances`` `local` instances would not fit in
    ``available`` MiB (None: unknown, so not checked)."""
    need = instances * LOCAL_INSTANCE_MIB
    if available is None or need <= available:
        return
    raise CloudError(
        f"`local` cannot take {instances} instances: each needs about {LOCAL_INSTANCE_MIB} "
        f"MiB, {need / 1024:.1f} GiB in all, and this host has {available / 1024:.1f} GiB "
        "of memory available"
    )
