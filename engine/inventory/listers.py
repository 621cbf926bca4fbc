"""The listers by cloud type: ``aws`` and ``local`` have one; every other type answers
:class:`~engine.inventory.cloudlister.ListingUnsupported` (add a module with a
:class:`~engine.inventory.cloudlister.CloudLister` and a line in :data:`LISTERS`).

Example:
    >>> lister_for("ssh")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    engine.inventory.cloudlister.ListingUnsupported: listing ... `ssh` clouds is not supported ...
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.inventory.cloudlister import CloudLister, ListingUnsupported
from engine.inventory.local import LocalLister


def _aws() -> CloudLister:
    from engine.inventory.aws import AwsLister

    return AwsLister()


#: Listers by cloud type, made on demand (boto3 is imported only for ``aws``).
LISTERS: dict[str, Callable[[Path], CloudLister]] = {
    "aws": lambda home: _aws(),
    "local": LocalLister,
}


def lister_for(cloud_type: str, home: Path = Path(".slipstream")) -> CloudLister:
    """The lister of ``cloud_type``; :class:`ListingUnsupported` says which types have one."""
    if cloud_type not in LISTERS:
        raise ListingUnsupported(
            f"listing instances on `{cloud_type}` clouds is not supported yet "
            f"(supported: {', '.join(sorted(LISTERS))})"
        )
    return LISTERS[cloud_type](home)
