"""Coordination across processes on one PostgreSQL database (the scaled mode).

Every coordination write (a parameter, a vote, a state move, the abort flag) sends a
``NOTIFY`` in its own transaction, so it is delivered exactly when it commits. Each
process (``serve`` replica or ``worker``) has one listener thread on a dedicated psycopg
connection that feeds those notifications to its :class:`Coordinator`: the run's cache is
updated and the waiters of the key are woken — a long-poll on replica B answers a write
made through replica A without any polling loop, and an abort raised anywhere fences
everyone at once. The channel is named after the store's schema, so services sharing one
database (tests do) do not hear each other.

Example (not run: it needs PostgreSQL)::

        replicas = Replicas(store, coordinator).start()
        ...                # writes through any process now wake waiters here
        replicas.stop()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from engine.coordination.coordinator import Coordinator
from engine.metrics import METRICS
from engine.store.database import Connection, PostgresDatabase
from engine.store.runstore import RunStore

log = logging.getLogger(__name__)

#: Room left in a NOTIFY payload (PostgreSQL allows 8000 bytes).
MAX_PAYLOAD = 7800
RECONNECT_S = 1.0


def channel_of(store: RunStore) -> str:
    """The NOTIFY channel of the store's schema."""
    row = store.database.fetch_one("SELECT current_schema()")
    schema = str(row[0]) if row else "public"
    return f"slipstream_{schema}"[:63]


def announcer(channel: str) -> Any:
    """The store hook sending one document (split by key when too long) per write."""

    def announce(conn: Connection, doc: dict[str, Any]) -> None:
        doc = {**doc, "t": time.time()}
        text = json.dumps(doc)
        if len(text.encode("utf-8")) > MAX_PAYLOAD and doc["k"] == "p":
            # Too long to carry: name the keys, the listeners read their values.
            for key in doc["v"]:
                small = {"r": doc["r"], "k": "p", "keys": [key], "t": doc["t"]}
                conn.execute("SELECT pg_notify(?, ?)", (channel, json.dumps(small)))
            return
        if len(text.encode("utf-8")) > MAX_PAYLOAD:
            text = json.dumps({"r": doc["r"], "k": "x", "t": doc["t"]})  # re-read the run
        conn.execute("SELECT pg_notify(?, ?)", (channel, text))

    return announce


class Replicas:
    """This process's part of the scaled mode's coordination: announce writes, listen."""

    def __init__(self, store: RunStore, coordinator: Coordinator) -> None:
        if not isinstance(store.database, PostgresDatabase):
            raise TypeError("coordination across processes needs PostgreSQL")
        self.store = store
        self.coordinator = coordinator
        self.conninfo = store.database.conninfo
        self.channel = channel_of(store)
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="pg-listen", daemon=True)

    def start(self) -> Replicas:
        """Announce this process's writes and listen to everyone's; returns once listening."""
        self.store.announce = announcer(self.channel)
        self._thread.start()
        self.listening.wait(30)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        first = True
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if not first:
                        self.coordinator.resync()  # what was missed while disconnected
                    first = False
                    self.listening.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except psycopg.Error as err:
                log.warning("listening for coordination writes: %s; reconnecting", err)
                self._stopping.wait(RECONNECT_S)

    def _deliver(self, payload: str) -> None:
        try:
            doc = json.loads(payload)
            self.coordinator.remote(doc)
            METRICS.observe("slipstream_wake_latency_seconds", max(0.0, time.time() - doc["t"]))
        except Exception:  # one bad notification must not stop the listener
            log.exception("coordination notification %r", payload[:200])
