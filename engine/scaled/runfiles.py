"""The files of a run that any worker on any host needs, kept in the store (scaled mode).

The replica that creates a run compiles its roots and writes its agents' tokens in its own
run folder; a worker on another host has neither. So before a job is queued they are saved
in the store's ``run_files`` table, and a worker restores whatever its run folder lacks
before driving the run. Tokens are secrets: they are as safe as the database, which holds
the Terraform state (where other clouds' user data carries them anyway). Once a run is
destroyed its tokens are dropped there too, as they are from the run folder.

Example (not run: it needs a store and a run)::

        save(store, home, run_id)          # on the replica, before queueing
        restore(store, other_home, run_id) # on a worker: ['tf/local/main.tf.json', …]
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from engine.files import write_atomic
from engine.store.runstore import RunStore

#: What is kept: the compiled roots and the agents' tokens.
PATTERNS = ("tf/*/main.tf.json", "tokens/*")


def _run_dir(home: Path, run_id: str) -> Path:
    return home / "runs" / run_id


def save(store: RunStore, home: Path, run_id: str) -> int:
    """Keep the run's files in the store (those already kept stay as they are)."""
    base = _run_dir(home, run_id)
    rows = [
        (run_id, path.relative_to(base).as_posix(), path.read_text(encoding="utf-8"))
        for pattern in PATTERNS
        for path in sorted(base.glob(pattern))
        if path.is_file()
    ]
    if rows:
        store.write(
            lambda conn: conn.executemany(
                "INSERT INTO run_files (run_id, path, body) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id, path) DO NOTHING",
                rows,
            )
        )
    return len(rows)


def restore(store: RunStore, home: Path, run_id: str) -> list[str]:
    """Write the kept files this host's run folder lacks; returns their paths."""
    base = _run_dir(home, run_id)
    written = []
    rows = store.database.fetch_all(
        "SELECT path, body FROM run_files WHERE run_id = ? ORDER BY path", (run_id,)
    )
    for relative, body in rows:
        parts = PurePosixPath(str(relative)).parts
        if not parts or ".." in parts or PurePosixPath(str(relative)).is_absolute():
            continue  # never outside the run folder
        target = base.joinpath(*parts)
        if not target.exists():
            write_atomic(target, str(body), mode=0o600)
            written.append(str(relative))
    return written


def forget_tokens(store: RunStore, run_id: str) -> None:
    """After a destroy: the run's tokens are of no more use anywhere."""
    store.write(
        lambda conn: conn.execute(
            "DELETE FROM run_files WHERE run_id = ? AND path LIKE ?", (run_id, "tokens/%")
        )
    )
