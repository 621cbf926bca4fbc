"""Cloud mappings, one module per cloud type, found by looking at this package.

Adding a cloud means adding one module here that defines ``MAPPING`` (a
:class:`providers_map.base.CloudMapping`) plus its rows in ``data/``; nothing else changes.

Example:
    >>> mapping_for("local").type
    'local'
    >>> "aws" in cloud_types()
    True
    >>> "abiquo" in NO_PROVIDER
    True
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from providers_map.base import CloudMapping

_NOT_MAPPINGS = {"base", "bootstrap", "catalog", "machines", "size"}

# Cloud types SlipStream users knew that no maintained Terraform provider reaches: what
# ``clouds.yaml`` answers when one is asked for.
NO_PROVIDER: dict[str, str] = {
    "abiquo": "reach machines already running there with type `ssh`",
    "occi": "OCCI sites (EGI's federated cloud) offer the OpenStack API now: use type `openstack`",
}


@cache
def _registry() -> dict[str, CloudMapping]:
    found: dict[str, CloudMapping] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_MAPPINGS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        mapping = getattr(module, "MAPPING", None)
        if isinstance(mapping, CloudMapping):
            found[mapping.type] = mapping
    return dict(sorted(found.items()))


def cloud_types() -> list[str]:
    """Every cloud type with a mapping, sorted."""
    return list(_registry())


def mapping_for(cloud_type: str) -> CloudMapping:
    """The mapping of ``cloud_type``; KeyError when there is none."""
    return _registry()[cloud_type]
