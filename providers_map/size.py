"""Machine sizes: the named ones recipes may use, and what each means in CPUs, RAM and disk.

Every mapping turns a :class:`Size` into its cloud's machine type (see ``catalog``); the
recipe language accepts the names of :data:`SIZES` or an explicit ``{cpu, ram_gb, disk_gb}``.

Example:
    >>> Size.named("small")
    Size(cpu=1, ram_gb=2.0, disk_gb=10, name='small')
"""

from __future__ import annotations

from dataclasses import dataclass

SIZES: dict[str, tuple[int, float, int]] = {
    "small": (1, 2.0, 10),
    "medium": (2, 4.0, 20),
    "large": (4, 16.0, 40),
    "xlarge": (8, 32.0, 80),
}


@dataclass(frozen=True, slots=True)
class Size:
    """Machine size; ``name`` is set for the named sizes."""

    cpu: int
    ram_gb: float
    disk_gb: int
    name: str | None = None

    @classmethod
    def named(cls, name: str) -> Size:
        cpu, ram, disk = SIZES[name]
        return cls(cpu, ram, disk, name)
