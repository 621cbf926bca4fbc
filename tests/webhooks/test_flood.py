"""A connection flood does not stop a run's agents from being served (issue 16).

Another local user can reach only the server's TCP port (the Unix socket sits in the
service's private folder): they open 5,000 connections and leave them idle, half of them
in the middle of a request line. Meanwhile the run's agents, over the Unix socket and over
TCP, still get every answer promptly, a long-poll is still woken at once; when the flood
is dropped the server lets go of every connection.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from engine.coordination.hub import Hub
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from engine.runs.launcher import token_file
from engine.runs.manager import RunManager
from engine.store.runstore import RunStore
from engine.terraform.binary import TerraformExe
from webhooks.app import create_app
from webhooks.server import HttpServer

FLOOD = 5000
PROMPT_S = 2.0


@dataclass
class Served:
    server: HttpServer
    manager: RunManager
    run_id: str
    tokens: dict[str, str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    store = RunStore.open(f"sqlite:///{tmp_path}/runs.db")
    hub = Hub()
    manager = RunManager(tmp_path, store, hub, TerraformExe(["false"], "env"))
    clouds = CloudsConfig.default()
    run_id = manager.create(
        RecipeLoader(None, clouds).deployment("webapp", require_values=True), clouds, "alice"
    )
    manager.coordinator.set_state(run_id, "Executing")
    tokens = {
        i["name"]: token_file(tmp_path, run_id, i["name"]).read_text().strip()
        for i in store.instances(run_id)
    }
    server = HttpServer(
        create_app(tmp_path, manager.coordinator),
        unix=tmp_path / "sockets" / "agents.sock",
        tcp=("127.0.0.1", 0),
        on_loop=hub.attach,
    ).start()
    try:
        yield Served(server, manager, run_id, tokens)
    finally:
        server.stop()
        store.close()


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def connection(served: Served, unix: bool) -> http.client.HTTPConnection:
    if unix:
        return UnixConnection(served.server.unix_url.removeprefix("unix:"))
    parts = urlsplit(served.server.tcp_url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)


def timed_request(
    conn: http.client.HTTPConnection, token: str, method: str, path: str, body: object = None
) -> tuple[int, dict[str, object], float]:
    """One request on a kept-alive connection: (status, JSON answer, seconds)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    began = time.monotonic()
    conn.request(method, path, body=data, headers=headers)
    answer = conn.getresponse()
    doc = json.loads(answer.read() or b"{}")
    return answer.status, doc, time.monotonic() - began


def flood(address: tuple[str, int], count: int) -> list[socket.socket]:
    """``count`` connections left idle; every other one stops in a request line."""
    held = []
    for n in range(count):
        sock = socket.create_connection(address, timeout=30)
        if n % 2:
            sock.sendall(b"GET /agent/v1/runs/x/params/y HTTP/1.1\r\nHost: x")
        held.append(sock)
    return held


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for both ends of the flood: this process is the flooder and the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * FLOOD
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= wanted
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_flood_of_idle_connections_does_not_stop_agents_being_served(
    served: Served, many_files: None
) -> None:
    run, tokens = served.run_id, served.tokens
    prefix = f"/agent/v1/runs/{run}"
    baseline = open_fds()
    parts = urlsplit(served.server.tcp_url)
    held = flood((parts.hostname or "", parts.port or 0), FLOOD)
    try:
        deadline = time.monotonic() + 20  # the server has taken every one of them
        while open_fds() < baseline + 2 * FLOOD and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_fds() >= baseline + 2 * FLOOD
        slowest = 0.0
        for unix in (True, False):
            conn = connection(served, unix)
            for n in range(20):
                status, doc, took = timed_request(
                    conn, tokens["web.1"], "PUT", f"{prefix}/params/url", {"value": f"v{n}"}
                )
                assert status == 200, doc
                slowest = max(slowest, took)
                status, doc, took = timed_request(
                    conn, tokens["lb.1"], "GET", f"{prefix}/params/{quote('web.1:url')}"
                )
                assert (status, doc["value"]) == (200, f"v{n}")
                slowest = max(slowest, took)
            status, _, took = timed_request(
                conn, tokens["db.1"], "POST", f"{prefix}/votes", {"state": "Executing"}
            )
            assert status == 200 and took < PROMPT_S
            conn.close()
        assert slowest < PROMPT_S, slowest

        # A long-poll waits among the flood and is woken at once by a value set over TCP.
        waiter = connection(served, unix=True)
        woken: list[tuple[int, dict[str, object], float]] = []
        poll = threading.Thread(
            target=lambda: woken.append(
                timed_request(waiter, tokens["web.2"], "GET", f"{prefix}/params/db_url?wait=20")
            )
        )
        poll.start()
        time.sleep(0.3)
        setter = connection(served, unix=False)
        assert (
            timed_request(
                setter, tokens["db.1"], "PUT", f"{prefix}/params/url", {"value": "pg://db"}
            )[0]
            == 200
        )
        poll.join(10)
        assert woken and woken[0][0] == 200 and woken[0][1]["value"] == "pg://db"
        assert woken[0][2] < 0.3 + PROMPT_S
        for conn in (waiter, setter):
            conn.close()
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    # Dropped, the flood leaves nothing held open by the server.
    deadline = time.monotonic() + 20
    while open_fds() > baseline + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds() <= baseline + 20
    conn = connection(served, unix=False)
    assert timed_request(conn, tokens["web.1"], "GET", f"{prefix}/state")[0] == 200
    conn.close()
