"""Images of the `local` cloud: a prepared sandbox saved as a content-addressed archive.

An instance's install steps change only its sandbox (``work/``, its ``home/``; packages must
already be on the host). :func:`save` archives those folders once the steps ran, leaving out
what its agent made (logs, reports, its socket, its scripts' temp files), as a
deterministic tar (sorted entries, no times or owners) named by its SHA-256 under
``<home>/images/local/``; the image id is ``sha256:<hex>``. :func:`restore` unpacks an image
into a new sandbox before its agent starts (the launcher does, when Terraform hands it
``SLIPSTREAM_IMAGE``); members that would leave the sandbox are refused.

Example:
    >>> image_path(Path("/srv/ss"), "sha256:" + "ab" * 32).name
    'abababababababababababababababababababababababababababababababab.tar'
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from pathlib import Path

from engine.errors import SlipstreamError
from engine.files import make_dirs

# What an image holds of a sandbox, and what of it the agent made (never baked).
KEPT = ("work", "home")
AGENT_MADE = {"work/bin", "work/logs", "work/reports", "work/tmp", "work/.agent", "work/agent.pid"}
_ID = re.compile(r"sha256:([0-9a-f]{64})")


def image_path(home: Path, image_id: str) -> Path:
    """Where the archive of ``image_id`` lives (ValueError for an id that is not ours)."""
    found = _ID.fullmatch(image_id)
    if found is None:
        raise ValueError(f"not a local image id: {image_id!r}")
    return home / "images" / "local" / f"{found.group(1)}.tar"


def save(home: Path, sandbox: Path) -> tuple[str, int]:
    """Archive the prepared ``sandbox``; (image id, size in bytes). Saving the same content
    again gives the same id and file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in KEPT:
            base = sandbox / top
            if base.is_dir():
                _add(tar, sandbox, base)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    image_id = f"sha256:{digest}"
    target = image_path(home, image_id)
    if not target.exists():
        make_dirs(target.parent)
        temp = target.with_suffix(f".tmp{os.getpid()}")
        temp.write_bytes(data)
        temp.replace(target)
    return image_id, len(data)


def _add(tar: tarfile.TarFile, sandbox: Path, path: Path) -> None:
    relative = path.relative_to(sandbox).as_posix()
    if relative in AGENT_MADE:
        return
    info = tar.gettarinfo(str(path), arcname=relative)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if info.isreg():
        with path.open("rb") as data:
            tar.addfile(info, data)
    elif info.isdir():
        tar.addfile(info)
        for child in sorted(path.iterdir()):
            _add(tar, sandbox, child)
    elif info.issym():
        tar.addfile(info)
    # Sockets, fifos and devices are a running instance's, not its image's.


def restore(home: Path, image_id: str, sandbox: Path) -> None:
    """Unpack ``image_id`` into ``sandbox`` (its folders may exist, empty)."""
    path = image_path(home, image_id)
    if not path.is_file():
        raise SlipstreamError(f"local image {image_id} is missing from {path.parent}")
    with tarfile.open(path, mode="r") as tar:
        tar.extractall(sandbox, filter="data")
