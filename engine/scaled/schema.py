"""``slipstream db upgrade``: the run store's migrations, then Procrastinate's schema.

Run it once before starting (or rolling-restarting) ``serve`` and ``worker`` processes on
a new release. Both halves are safe to run from several hosts at once (an advisory lock).

Example (not run: it needs PostgreSQL)::

        upgrade("postgresql+psycopg://ss@db/slip")
        # ['store at revision 0002', 'job queue schema applied']
"""

from __future__ import annotations

from engine.scaled.queue import conninfo, make_app
from engine.store.runstore import RunStore

_QUEUE_LOCK_KEY = 7411002  # pg_advisory_xact_lock key of the job queue's schema


def upgrade(url: str) -> list[str]:
    """Upgrade the store and install the job queue's tables; returns what was done."""
    import psycopg

    done = []
    store = RunStore.open(url)  # migrates to the newest revision
    try:
        done.append(f"store at revision {store.revision()}")
    finally:
        store.close()
    schema_sql = make_app(url).schema_manager.get_schema()
    with psycopg.connect(conninfo(url)) as conn, conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({_QUEUE_LOCK_KEY})")
        row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            done.append("job queue schema already there")
        else:
            conn.execute(schema_sql.encode("utf-8"))
            done.append("job queue schema applied")
    return done
