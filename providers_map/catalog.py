"""The data tables: native images and machine sizes per cloud type (``data/*.yaml``).

Example:
    >>> "ubuntu-22.04" in native_images()
    True
    >>> machine_type("aws", Size.named("medium"))
    't3.medium'
    >>> machine_type("aws", Size(cpu=512, ram_gb=1, disk_gb=10)) is None
    True
    >>> machine_shape("opennebula", Size.named("large"))
    (4, 16.0)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from providers_map.size import Size

DATA = Path(__file__).parent / "data"


@cache
def _table(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{name}.yaml must be a mapping"
    return loaded


def native_images() -> dict[str, dict[str, Any]]:
    """Native image name → per-cloud-type lookup data."""
    return _table("images")


def image_lookup(cloud_type: str, image: str, settings: dict[str, Any] | None = None) -> Any:
    """How ``cloud_type`` finds native ``image``; a cloud's ``images`` setting wins."""
    overrides = (settings or {}).get("images") or {}
    if image in overrides:
        return overrides[image]
    return native_images()[image].get(cloud_type)


def machine_type(cloud_type: str, size: Size) -> str | None:
    """The cloud's machine type for ``size``: by name, else the first row big enough.

    None when no row is big enough (mappings report that from ``check``).
    """
    rows: dict[str, dict[str, Any]] = _table("sizes")[cloud_type]
    if size.name and size.name in rows:
        return str(rows[size.name]["type"])
    for row in rows.values():
        if row["cpu"] >= size.cpu and row["ram_gb"] >= size.ram_gb:
            return str(row["type"])
    return None


def machine_shape(cloud_type: str, size: Size) -> tuple[int, float]:
    """vCPUs and GiB of RAM for a cloud without machine types, where a machine gets exactly
    what it asks for: a named size's row, else the custom size as given.

    Example:
        >>> machine_shape("vcd", Size(cpu=3, ram_gb=6, disk_gb=30))
        (3, 6)
    """
    rows: dict[str, dict[str, Any]] = _table("sizes")[cloud_type]
    if size.name and size.name in rows:
        return int(rows[size.name]["cpu"]), float(rows[size.name]["ram_gb"])
    return size.cpu, size.ram_gb
