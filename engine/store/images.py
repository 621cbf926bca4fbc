"""Images built by the image factory, one per (component content hash, cloud).

A component's content hash covers its install steps, its packages and its whole parent
chain, so an image found by the hash a component has *now* is current; images recorded
under other hashes of that component are stale and never used (``slipstream images``
shows them as such).

Example:
    >>> from engine.store.runstore import RunStore
    >>> images = ImageStore(RunStore.open("sqlite://"))
    >>> images.record(ImageRecord("ab12", "local", "web", "sha256:9f…", 2048, "r1", "alice", 1.0))
    >>> images.current("ab12", "local").image_id
    'sha256:9f…'
    >>> images.current("cd34", "local") is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.store.runstore import RunStore

_COLUMNS = "content_hash, cloud, component, image_id, size_bytes, run_id, built_by, created_at"


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One built image: what it was built from, where, and its id on that cloud."""

    content_hash: str
    cloud: str
    component: str
    image_id: str
    size_bytes: int
    run_id: str
    built_by: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "cloud": self.cloud,
            "hash": self.content_hash,
            "image": self.image_id,
            "size_bytes": self.size_bytes,
            "run": self.run_id,
            "built_by": self.built_by,
            "created_at": self.created_at,
        }


class ImageStore:
    """Image records in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.db = store.database

    def record(self, image: ImageRecord) -> None:
        """Store ``image``, replacing an earlier build of the same hash on the same cloud."""
        row = (
            image.content_hash,
            image.cloud,
            image.component,
            image.image_id,
            image.size_bytes,
            image.run_id,
            image.built_by,
            image.created_at,
        )

        def write(conn: Any) -> None:
            conn.execute(
                "DELETE FROM images WHERE content_hash = ? AND cloud = ?", (row[0], row[1])
            )
            conn.execute(f"INSERT INTO images ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

        self.store.write(write)

    def current(self, content_hash: str, cloud: str) -> ImageRecord | None:
        """The image built from exactly ``content_hash`` on ``cloud``, if any."""
        row = self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM images WHERE content_hash = ? AND cloud = ?",
            (content_hash, cloud),
        )
        return ImageRecord(*row) if row else None

    def list(self, component: str | None = None) -> list[ImageRecord]:
        """Every image (of ``component``), newest first."""
        sql = f"SELECT {_COLUMNS} FROM images"
        args: tuple[object, ...] = ()
        if component is not None:
            sql += " WHERE component = ?"
            args = (component,)
        rows = self.db.fetch_all(sql + " ORDER BY created_at DESC, cloud", args)
        return [ImageRecord(*row) for row in rows]
