"""A fake Git host REST API on loopback: a real HTTP server that checks what SlipStream
sends against the real request shapes of GitHub, GitLab and Gitea, and records it.

Example (in a test)::

    with FakeHost("github", "acme/infra", "tok") as host:
        ...  # point a repository's --api-url at host.url
        assert host.statuses()[-1]["state"] == "success"
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

SHA = r"[0-9a-f]{40}"


class FakeHost:
    """Accepts only well-formed status and comment calls of one host for one project."""

    def __init__(self, host: str, project: str, token: str) -> None:
        self.host, self.project, self.token = host, project, token
        self.calls: list[dict[str, Any]] = []  # the accepted ones
        self.refused: list[str] = []  # what was wrong with the others
        self._next_id = 100
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                status, doc = fake.handle(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_PUT = do_GET = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}" + (
            "/api/v4" if host == "gitlab" else "/api/v1" if host == "gitea" else ""
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the wire format --------------------------------------------------------------

    def _auth_ok(self, headers: dict[str, str]) -> bool:
        if self.host == "gitlab":
            return headers.get("private-token") == self.token
        prefix = "token " if self.host == "gitea" else "Bearer "
        return headers.get("authorization") == prefix + self.token

    def _routes(self) -> list[tuple[str, str, str, set[str]]]:
        """(method, path pattern, kind, required body keys)."""
        if self.host == "gitlab":
            p = f"/api/v4/projects/{re.escape(quote(self.project, safe=''))}"
            return [
                ("POST", rf"{p}/statuses/({SHA})", "status", {"state", "name"}),
                ("POST", rf"{p}/merge_requests/(\d+)/notes", "comment", {"body"}),
                ("PUT", rf"{p}/merge_requests/(\d+)/notes/(\d+)", "update", {"body"}),
            ]
        base = "/api/v1" if self.host == "gitea" else ""
        p = f"{base}/repos/{re.escape(self.project)}"
        return [
            ("POST", rf"{p}/statuses/({SHA})", "status", {"state", "context"}),
            ("POST", rf"{p}/issues/(\d+)/comments", "comment", {"body"}),
            ("PATCH", rf"{p}/issues/comments/(\d+)", "update", {"body"}),
        ]

    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        headers = {k.lower(): v for k, v in headers.items()}  # HTTP names are case-blind
        with self._lock:
            if not self._auth_ok(headers):
                self.refused.append(f"{method} {path}: bad auth header")
                return 401, {"message": "Bad credentials"}
            if not headers.get("content-type", "").startswith("application/json"):
                self.refused.append(f"{method} {path}: not JSON")
                return 415, {"message": "JSON only"}
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self.refused.append(f"{method} {path}: body not JSON")
                return 400, {"message": "Problems parsing JSON"}
            for want_method, pattern, kind, keys in self._routes():
                match = re.fullmatch(pattern, path)
                if match and method == want_method:
                    if not keys <= set(body):
                        self.refused.append(f"{method} {path}: missing {keys - set(body)}")
                        return 422, {"message": "Validation Failed"}
                    states = {"gitlab": {"pending", "running", "success", "failed", "canceled"}}
                    allowed = states.get(self.host, {"pending", "success", "failure", "error"})
                    if kind == "status" and body["state"] not in allowed:
                        self.refused.append(f"{method} {path}: state {body['state']}")
                        return 422, {"message": "Validation Failed"}
                    call = {"kind": kind, "method": method, "groups": match.groups(), **body}
                    self.calls.append(call)
                    if kind == "comment":
                        self._next_id += 1
                        return 201, {"id": self._next_id, "body": body["body"]}
                    return (200 if kind == "update" else 201), {"id": 1, **body}
            self.refused.append(f"{method} {path}: no such route")
            return 404, {"message": "Not Found"}

    def statuses(self, sha: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c["kind"] == "status" and (sha is None or c["groups"][0] == sha)
            ]

    def comments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["kind"] in ("comment", "update")]
