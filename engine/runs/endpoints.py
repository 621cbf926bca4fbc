"""Where agents reach the server driving a run.

Example:
    >>> Endpoints("unix:/srv/slipstream/sockets/812.sock", "").local
    'unix:/srv/slipstream/sockets/812.sock'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoints:
    """``local`` for agents on this host (``unix:/path``), ``remote`` for agents on other
    machines (``https://…``; empty when nothing listens for them), and the fingerprint of
    the certificate remote agents pin (``sha256:<hex>``; empty for plain HTTP)."""

    local: str
    remote: str
    fingerprint: str = ""
