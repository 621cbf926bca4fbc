"""A real ``slipstream serve`` for tests: a subprocess on loopback in its own service home,
with users and tokens made by the real CLI, and ways to call it (plain HTTP, SSE, the CLI
as a client).

Example (in a test)::

    served = serve(tmp_path / "home", tls=True)
    token = served.user("alice")
    assert served.call("GET", "/api/v1/whoami", token).json["name"] == "alice"
    served.stop()
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.e2e import REPO, cli, marked_processes

START_S = 60.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Served:
    home: Path
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def ca_file(self) -> Path | None:
        return self.home / "tls" / "cert.pem" if self.url.startswith("https:") else None

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        if self.ca_file is None:
            return http.client.HTTPConnection(parts.netloc, timeout=timeout)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        """One request; ``body`` is sent as JSON (``raw`` as is)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            raw = json.dumps(body).encode()
        if raw is not None:
            sent.setdefault("Content-Type", "application/json")
        conn = self.connection()
        try:
            conn.request(method, path, raw, sent)
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Answer(response.status, headers, response.read())
        finally:
            conn.close()

    def stream(
        self, path: str, token: str, headers: dict[str, str] | None = None, timeout: float = 60
    ) -> Iterator[tuple[str, str, str]]:
        """(id, event, data) of each message of an SSE stream, until the server ends it."""
        conn = self.connection(timeout)
        try:
            conn.request(
                "GET", path, headers={"Authorization": f"Bearer {token}", **(headers or {})}
            )
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert response.headers["Content-Type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            for line in iter(response.readline, b""):
                text = line.decode().rstrip("\n")
                if not text:
                    if "data" in fields:
                        yield fields.get("id", ""), fields.get("event", "message"), fields["data"]
                    fields = {}
                elif not text.startswith(":"):
                    name, _, value = text.partition(": ")
                    fields[name] = value
        finally:
            conn.close()

    def client_env(self, token: str, home: Path) -> dict[str, str]:
        """The environment of the CLI as this service's client (``home``: the client's own,
        which it must leave alone)."""
        env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester")
        env.update(SLIPSTREAM_URL=self.url, SLIPSTREAM_TOKEN=token)
        if self.ca_file is not None:
            env["SLIPSTREAM_CA_FILE"] = str(self.ca_file)
        env.pop("SLIPSTREAM_DATABASE_URL", None)
        return env

    def client(
        self, token: str, *args: str, timeout: float = 300, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """``slipstream ARGS`` as a real process, a client of this service."""
        return subprocess.run(
            [sys.executable, "-m", "engine.cli.app", *args],
            cwd=cwd,
            env=self.client_env(token, self.home.parent / "client-home"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def user(self, name: str, admin: bool = False) -> str:
        """Add a user with ``slipstream user add`` and return a token from
        ``slipstream token create`` (run on the service's host, embedded)."""
        cli(self.home, "user", "add", name, *(["--admin"] if admin else []), check=True)
        made = cli(self.home, "token", "create", "--user", name, "--json", check=True)
        return str(json.loads(made.stdout)["token"])

    def stop(self) -> int:
        """SIGTERM, as a service manager would; then destroy whatever runs a failed test
        left (embedded, now that nothing serves them)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        runs = self.home / "runs"
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            if (run / "tokens").exists() or marked_processes(run.name):
                cli(self.home, "destroy", run.name, timeout=120)
        return self.proc.returncode


def serve(home: Path, tls: bool, env: dict[str, str] | None = None) -> Served:
    """Start ``slipstream serve`` on a free loopback port (``env``: variables added to its
    environment); returns once it serves."""
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"{home.name}-serve.log"
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), **(env or {}))
    for name in ("SLIPSTREAM_URL", "SLIPSTREAM_TOKEN", "SLIPSTREAM_DATABASE_URL"):
        env.pop(name, None)
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--tls", "on" if tls else "off"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli.app", *args],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("serving "):
                return Served(home, line.split()[1], proc, log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"slipstream serve did not start:\n{log.read_text(errors='replace')}")
