"""Which backend a panel uses: remote with a URL and a token (checked at once), else the
embedded service of a home.

Example:
    >>> connect(url="http://127.0.0.1:9")
    Traceback (most recent call last):
    ...
    notebooks.backend.BackendError: a remote service needs both url= and token=
"""

from __future__ import annotations

from pathlib import Path

from notebooks.backend import Backend, BackendError


def connect(
    url: str | None = None,
    token: str | None = None,
    home: Path | None = None,
    root: Path | None = None,
    ca_file: str | None = None,
) -> Backend:
    """The backend asked for: remote with ``url`` (its token checked now), else embedded."""
    if url or token:
        from notebooks.remote import RemoteBackend

        if not url or not token:
            raise BackendError("a remote service needs both url= and token=")
        backend: Backend = RemoteBackend(url, token, ca_file, root)
        try:
            backend.whoami()
        except BackendError:
            backend.close()
            raise
        return backend
    from notebooks.embedded import EmbeddedBackend

    return EmbeddedBackend.open(home, root)
