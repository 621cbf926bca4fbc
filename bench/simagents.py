"""Simulated instances for the coordination bench and the scale test: asyncio clients of
the agent API, one keep-alive HTTP/1.1 connection each, stdlib only (no engine imports).

Each instance does what an agent and its scripts do over a run of the bench recipe
(``origin`` x1 named ``server``, ``peer`` x N-1 named ``client``): it waits for
Provisioning and votes; in Executing the clients set their ``url`` and ``ss-get upstream``
(mapped to ``server.1:url``), which server.1 sets once its ``ss-get-all client url`` has
returned (a fan-out: one value N-1 instances wait for); then pairs play ping-pong (A waits
for ``B:ready``, B sets it once A waits, then B waits for A's answer); it votes; in
SendingReports it sets ``statecustom`` and votes; it is done when it sees Ready. With
``burst`` seconds, every instance then sets and gets without waiting (the sustained rate).

Times are ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of the
machine), so the bench compares them with the server's.

Run as a process (what the bench does): ``python bench/simagents.py`` reads one JSON
config on stdin (see :func:`run`), prints ``connected`` once every connection is open and
authenticated, then one JSON line of results. ``python bench/simagents.py flood HOST PORT
N`` opens N idle TCP connections (half stop in the middle of a request line), prints
``flooded K``, and drops them all when its stdin closes.

Example (not run: it needs a server)::

    conn = await Http.open("tcp:127.0.0.1:8080", "/agent/v1/runs/abc", token)
    status, body = await conn.call("GET", "/state")
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import sys
import time
from typing import Any

STATES = ("Provisioning", "Executing", "SendingReports", "Ready")
LONG_POLL_S = 10.0  # one long-poll; a wait that needs longer polls again
PINGPONG_SETTLE_S = 0.005  # B sets its value this long after A has sent its GET
CONNECT_AT_ONCE = 200  # connections being opened at the same time


class Aborted(Exception):
    """The run was aborted (409, or the state says so): the instance stops."""


class Http:
    """One keep-alive HTTP/1.1 connection to the agent API, with the instance's token."""

    def __init__(self, target: str, base: str, token: str) -> None:
        self.target, self.base = target, base
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0
        self.requests = 0
        self.retries: list[str] = []

    @classmethod
    async def open(cls, target: str, base: str, token: str) -> Http:
        conn = cls(target, base, token)
        await conn.connect()
        return conn

    async def connect(self) -> None:
        """``target``: ``tcp:HOST:PORT`` or ``unix:/PATH``."""
        kind, _, where = self.target.partition(":")
        if kind == "unix":
            self.reader, self.writer = await asyncio.open_unix_connection(where, limit=2**20)
        else:
            host, _, port = where.rpartition(":")
            self.reader, self.writer = await asyncio.open_connection(host, int(port), limit=2**20)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Status and JSON body; 409 raises :class:`Aborted`, any status but 200 and 408
        raises RuntimeError. Every call the instances make is idempotent (the same value
        set again, a vote upserted), so a dropped connection is reopened and the call
        repeated, twice at most."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {self.base}{path} HTTP/1.1\r\nHost: agents\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        ).encode()
        for attempt in range(3):
            try:
                if self.writer is None:
                    await self.connect()
                assert self.writer is not None and self.reader is not None
                self.writer.write(head + self.auth + b"\r\n" + data)
                status, payload, close = await read_response(self.reader)
                self.requests += 1
                if close:
                    self.close()
                break
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                self.retries.append(f"{method} {path.split('?')[0].split('/')[1]}: {exc!r}")
                self.close()
                if attempt == 2:
                    raise
        if status == 409:
            raise Aborted(payload.decode(errors="replace").strip())
        if status not in (200, 408):
            raise RuntimeError(f"{method} {path}: {status} {payload[:200]!r}")
        return status, (json.loads(payload) if payload else {})


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes the connection) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = b""
    return status, body, headers.get("connection", "").lower() == "close"


class Instance:
    """One simulated instance: its connection and what it saw when."""

    def __init__(self, conn: Http, name: str) -> None:
        self.conn, self.name = conn, name
        self.param_ops = 0
        self.last_state = "Initializing"
        self.rec: dict[str, Any] = {
            "name": name,
            "seen": {},
            "voted": {},
            "put": {},
            "get": {},
            "getall": None,
            "burst_ops": 0,
            "error": None,
        }

    async def wait_state(self, target: str, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {target} in time")
            wait = min(LONG_POLL_S, left)
            _, body = await self.conn.call("GET", f"/state?after={self.last_state}&wait={wait:.3f}")
            now = time.monotonic()
            if body.get("abort"):
                raise Aborted(body["abort"])
            self.last_state = body["state"]
            self.rec["seen"].setdefault(self.last_state, now)
            if self.last_state == target:
                return
            if self.last_state not in STATES and self.last_state != "Initializing":
                raise Aborted(f"run is {self.last_state}")

    async def vote(self, state: str) -> None:
        sent = time.monotonic()
        await self.conn.call("POST", "/votes", {"state": state})
        self.rec["voted"][state] = (sent, time.monotonic())

    async def put(self, key: str, value: str) -> None:
        sent = time.monotonic()
        await self.conn.call("PUT", f"/params/{key}", {"value": value})
        self.param_ops += 1
        self.rec["put"][key] = (sent, time.monotonic())

    async def get(self, key: str, deadline: float, sent_flag: asyncio.Event | None = None) -> str:
        sent = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: ss-get {key} timed out")
            call = self.conn.call("GET", f"/params/{key}?wait={min(LONG_POLL_S, left):.3f}")
            if sent_flag is not None:
                task = asyncio.ensure_future(call)
                await asyncio.sleep(0)  # the request is written before the partner is told
                sent_flag.set()
                status, body = await task
            else:
                status, body = await call
            self.param_ops += 1
            if status == 200:
                self.rec["get"][key] = (sent, time.monotonic())
                return str(body["value"])

    async def get_all(self, node: str, key: str, deadline: float) -> list[str]:
        sent = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: ss-get-all {node} {key} timed out")
            path = f"/nodes/{node}/params/{key}?wait={min(LONG_POLL_S, left):.3f}"
            status, body = await self.conn.call("GET", path)
            self.param_ops += 1
            if status == 200:
                self.rec["getall"] = (sent, time.monotonic())
                return [str(v) for v in body["values"]]


class Crowd:
    """What the instances of one process share: ping-pong flags and the burst's start."""

    def __init__(self, names: list[str], burst_s: float) -> None:
        self.sent = {name: asyncio.Event() for name in names}
        self.ready_left = len(names)
        self.all_ready = asyncio.Event()
        self.burst_s = burst_s

    def at_ready(self) -> None:
        self.ready_left -= 1
        if self.ready_left <= 0:
            self.all_ready.set()


async def life(me: Instance, cfg: dict[str, Any], crowd: Crowd) -> None:
    """What one instance's agent and scripts do over the whole run."""
    name, deadline = me.name, cfg["deadline"]
    partner, first = cfg["partners"].get(name, (None, False))
    try:
        await me.wait_state("Provisioning", deadline)
        await me.vote("Provisioning")

        await me.wait_state("Executing", deadline)
        if name == "server.1":
            urls = await me.get_all("client", "url", deadline)
            if len(urls) != cfg["n"] - 1:
                raise AssertionError(f"ss-get-all gave {len(urls)} urls")
            await me.put("url", "http://server-1:8080/")
        else:
            await me.put("url", f"http://{name}:8080/")
            upstream = await me.get("upstream", deadline)
            if upstream != "http://server-1:8080/":
                raise AssertionError(f"upstream is {upstream!r}")
        if partner is not None:
            if first:  # A: wait for B's value, then answer
                await me.get(f"{partner}:ready", deadline, sent_flag=crowd.sent[name])
                await me.put("ready", "pong")
            else:  # B: once A is waiting, set; then wait for A's answer
                await asyncio.wait_for(crowd.sent[partner].wait(), deadline - time.monotonic())
                await asyncio.sleep(PINGPONG_SETTLE_S)
                await me.put("ready", "ping")
                await me.get(f"{partner}:ready", deadline)
        await me.vote("Executing")

        await me.wait_state("SendingReports", deadline)
        await me.put("statecustom", "reports sent")
        await me.vote("SendingReports")

        await me.wait_state("Ready", deadline)
    except Exception as exc:  # reported, not raised: the other instances go on
        me.rec["error"] = f"{type(exc).__name__}: {exc}"
    crowd.at_ready()
    if crowd.burst_s > 0 and me.rec["error"] is None:
        await burst(me, cfg["peers"][name], crowd)


async def burst(me: Instance, peer: str, crowd: Crowd) -> None:
    """Set and get without waits for ``crowd.burst_s`` seconds, all instances at once."""
    await crowd.all_ready.wait()
    start = time.monotonic()
    end, ops = start + crowd.burst_s, 0
    try:
        while time.monotonic() < end:
            await me.conn.call("PUT", "/params/statecustom", {"value": f"burst {ops}"})
            await me.conn.call("GET", f"/params/{peer}:url?wait=0")
            ops += 2
    except Exception as exc:
        me.rec["burst_error"] = f"{type(exc).__name__}: {exc}"
    me.rec["burst_ops"] = ops
    me.rec["burst_span"] = (start, time.monotonic())


async def run(cfg: dict[str, Any], connected: Any = None) -> dict[str, Any]:
    """Connect every instance of ``cfg["names"]`` (calling ``connected()`` once all are),
    live the run, close every connection; the per-instance records and the CPU used.

    ``cfg``: ``target`` (``tcp:HOST:PORT`` or ``unix:PATH``), optionally ``targets`` (name →
    target, for instances talking to another server than ``target``: the scaled bench's
    replicas), ``run_id``, ``n`` (instances in the whole run), ``names``, ``tokens`` (name
    → token), ``partners`` (name → [partner, waits first]), ``peers`` (name → whose url the
    burst reads), ``burst`` (seconds), ``deadline`` (time.monotonic() by which everything
    must be over)."""
    base = f"/agent/v1/runs/{cfg['run_id']}"
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def join(name: str) -> Instance:
        async with gate:
            target = cfg.get("targets", {}).get(name, cfg["target"])
            conn = await Http.open(target, base, cfg["tokens"][name])
            await conn.call("GET", "/state")  # authenticated once, outside the timing
        return Instance(conn, name)

    instances = await asyncio.gather(*(join(name) for name in cfg["names"]))
    cpu = time.process_time()
    if connected is not None:
        connected()
    crowd = Crowd(cfg["names"], float(cfg.get("burst", 0)))
    try:
        await asyncio.gather(*(life(me, cfg, crowd) for me in instances))
    finally:
        for me in instances:
            me.conn.close()
        await asyncio.sleep(0)  # the transports' close callbacks
    records = []
    for me in instances:
        me.rec.update(
            param_ops=me.param_ops,
            requests=me.conn.requests,
            connects=me.conn.connects,
            why=me.conn.retries,
        )
        records.append(me.rec)
    return {"instances": records, "cpu": time.process_time() - cpu}


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def flood(host: str, port: int, count: int) -> None:
    """Open ``count`` idle connections, half of them stopped in the middle of a request
    line; hold them until stdin closes, then drop them all."""
    raise_file_limit()
    socks = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.connect((host, port))
        except OSError as exc:
            print(f"flood stopped at {i}: {exc!r}", file=sys.stderr, flush=True)
            sock.close()
            break
        if i % 2:
            sock.sendall(b"GET /agent/v1/runs/")
        socks.append(sock)
    print(f"flooded {len(socks)}", flush=True)
    sys.stdin.read()
    for sock in socks:
        sock.close()


def main() -> None:
    if sys.argv[1:2] == ["flood"]:
        flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    raise_file_limit()
    cfg = json.loads(sys.stdin.readline())

    def connected() -> None:
        print("connected", flush=True)

    result = asyncio.run(run(cfg, connected))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
