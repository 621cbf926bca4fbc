"""``/healthz`` and ``/metrics`` of the scaled mode's processes.

The page bodies are plain functions (``serve`` mounts them on its own server); a worker,
which has no HTTP server, runs :class:`OpsServer`, a tiny stdlib one on its own port.
Gauges are read from the database at each scrape: jobs per status (Procrastinate's
table), runs per state.

Example (not run: it needs a store)::

        status, body = health(store)       # (200, b'{"ok": true, ...}')
        text = metrics_text(store)         # Prometheus text format
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.metrics import METRICS, Labels
from engine.store.runstore import RunStore

JOB_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


def health(store: RunStore, role: str = "worker") -> tuple[int, bytes]:
    """(HTTP status, JSON body): 200 when the database answers, else 503 with why."""
    try:
        store.database.fetch_one("SELECT 1")
    except Exception as err:
        return 503, json.dumps({"ok": False, "role": role, "error": str(err)}).encode()
    return 200, json.dumps({"ok": True, "role": role}).encode()


def gauges(store: RunStore) -> dict[str, dict[Labels, float]]:
    """Jobs queued/running/failed (by Procrastinate status) and runs per state."""
    found: dict[str, dict[Labels, float]] = {}
    runs = store.database.fetch_all("SELECT state, COUNT(*) FROM runs GROUP BY state")
    found["slipstream_runs"] = {(("state", str(s)),): float(n) for s, n in runs}
    jobs: dict[Labels, float] = {(("status", s),): 0.0 for s in JOB_STATUSES}
    if "procrastinate_jobs" in store.database.tables():
        rows = store.database.fetch_all(
            "SELECT status, COUNT(*) FROM procrastinate_jobs GROUP BY status"
        )
        jobs.update({(("status", str(s)),): float(n) for s, n in rows})
    found["slipstream_jobs"] = jobs
    return found


def metrics_text(store: RunStore) -> str:
    """The Prometheus text exposition of this process's metrics and the shared gauges."""
    try:
        shared = gauges(store)
    except Exception:  # the database is away: the process's own figures still show
        shared = {}
    return METRICS.render(shared)


class OpsServer:
    """``/healthz`` and ``/metrics`` on ``host:port`` (port 0: any free one)."""

    def __init__(self, store: RunStore, host: str = "127.0.0.1", port: int = 0) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kind = "application/json"
                if self.path == "/healthz":
                    status, body = health(outer.store)
                elif self.path == "/metrics":
                    status, body = 200, metrics_text(outer.store).encode()
                    kind = "text/plain; version=0.0.4"
                else:
                    status, body = 404, b'{"error": "not found"}'
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the log

        self.store = store
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
