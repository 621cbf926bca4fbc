"""The on-machine agent (engine/agent/slipstream_agent.py), run as a real subprocess.

A fake coordination server in this module speaks the agent HTTP API (DESIGN.md §4–5):
parameters with long-poll, the abort fence, node-wide reads, votes that advance a small
state machine, reports and events. Every test drives the agent's command line.
"""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

AGENT = Path(__file__).resolve().parents[2] / "engine" / "agent" / "slipstream_agent.py"
RUN_ID = "run-42"
INSTANCE = "web.1"
TOKEN = "tok-very-secret-123"
NEXT_STATE = {
    "Provisioning": "Executing",
    "Executing": "SendingReports",
    "SendingReports": "Ready",
}


# --------------------------------------------------------------------------- the fake server


class FakeServer:
    """An in-process stand-in for the coordination API, recording what agents send."""

    def __init__(self, port: int = 0) -> None:
        self.cond = threading.Condition()
        self.params: dict[str, str] = {}
        self.node_sizes: dict[str, int] = {"web": 1}
        self.forbidden: set[str] = set()
        self.abort: str | None = None
        self.state = "Provisioning"
        self.auto_advance = True
        self.votes: list[str] = []
        self.aborts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.reports: list[tuple[str, bytes]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next: list[int] = []
        self.revoked = False  # the run was destroyed: every token is refused (401)
        self.report_refusal: tuple[int, str] | None = None
        self.recipe: dict[str, Any] = {
            "instance": INSTANCE,
            "node": "web",
            "index": 1,
            "cloud_type": "local",
            "packages": [],
            "built": False,
            "scripts": {},
        }
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what tests do to the run, as the engine would

    def set_param(self, key: str, value: str) -> None:
        with self.cond:
            self.params[key] = value
            self.cond.notify_all()

    def set_state(self, state: str) -> None:
        with self.cond:
            self.state = state
            self.cond.notify_all()

    def raise_abort(self, message: str, cancel: bool = False) -> None:
        with self.cond:
            self.aborts.append({"message": message, "cancel": cancel})
            if self.abort is None:
                self.abort = message
                self.state = "Cancelled" if cancel else "Aborted"
            self.cond.notify_all()

    def requests_to(self, method: str, prefix: str) -> list[tuple[str, str, Any]]:
        with self.cond:
            return [r for r in self.requests if r[0] == method and r[1].startswith(prefix)]

    # -- the API

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        wait = float(query.get("wait", "0"))
        fenced = query.get("ignore_abort") != "true"
        parts = [unquote(p) for p in path.split("/")]
        if method == "GET" and path == "/recipe":
            return 200, self.recipe
        if path.startswith("/params/") and len(parts) == 3:
            key = parts[2] if ":" in parts[2] else f"{INSTANCE}:{parts[2]}"
            if key in self.forbidden:
                return 403, {"error": f"not allowed: {key}"}
            if method == "GET":
                return self.wait_for(
                    wait, lambda: self.params.get(key), lambda v: {"key": key, "value": v}, fenced
                )
            if method == "PUT":
                with self.cond:
                    if self.abort is not None and fenced:
                        return 409, {"error": "aborted", "abort": self.abort}
                    self.params[key] = body["value"]
                    self.cond.notify_all()
                return 204, None
        if method == "GET" and path.startswith("/nodes/") and len(parts) == 5:
            node, key = parts[2], parts[4]
            names = [f"{node}.{i}:{key}" for i in range(1, self.node_sizes[node] + 1)]

            def values() -> list[str] | None:
                found = [self.params.get(name) for name in names]
                return None if None in found else [v for v in found if v is not None]

            status, body = self.wait_for(
                wait, values, lambda v: {"keys": names, "values": v}, fenced
            )
            if status == 408:
                body = {**body, "keys": names, "values": [self.params.get(n) for n in names]}
            return status, body
        if method == "POST" and path == "/abort":
            self.raise_abort(body["message"], bool(body.get("cancel")))
            return 200, {}
        if method == "GET" and path == "/state":
            after = query.get("after")
            with self.cond:
                if after:
                    self.cond.wait_for(lambda: self.state != after, timeout=wait)
                return 200, {"state": self.state, "abort": self.abort}
        if method == "POST" and path == "/votes":
            with self.cond:
                self.votes.append(body["state"])
                if self.auto_advance and body["state"] == self.state and self.abort is None:
                    self.state = NEXT_STATE.get(self.state, self.state)
                    if self.state == "Ready":
                        threading.Timer(0.3, self.set_state, args=("Done",)).start()
                self.cond.notify_all()
            return 200, {}
        if method == "POST" and path == "/reports":
            if self.report_refusal is not None:
                return self.report_refusal[0], {"error": self.report_refusal[1]}
            self.reports.append(body)
            return 200, {}
        if method == "POST" and path == "/events":
            self.events.append(body)
            return 200, {}
        return 404, {"error": f"no route {method} {path}"}

    def wait_for(
        self,
        wait: float,
        found: Callable[[], Any],
        answer: Callable[[Any], Any],
        fenced: bool = True,
    ) -> tuple[int, Any]:
        """The long poll: hold the request until found() or the abort (unless not
        ``fenced``: SlipStream's --ignore-abort), or wait expires."""
        with self.cond:
            self.cond.wait_for(
                lambda: (fenced and self.abort is not None) or found() is not None, wait
            )
            if fenced and self.abort is not None:
                return 409, {"error": "aborted", "abort": self.abort}
            value = found()
            if value is None:
                return 408, {"error": "not set"}
            return 200, answer(value)


def make_handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.dispatch("GET")

        def do_PUT(self) -> None:
            self.dispatch("PUT")

        def do_POST(self) -> None:
            self.dispatch("POST")

        def dispatch(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(split.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            prefix = f"/agent/v1/runs/{RUN_ID}"
            body: Any = None
            if self.headers.get("Content-Type") == "application/gzip":
                body = (self.headers["Content-Type"], raw)
            elif raw:
                body = json.loads(raw)
            with fake.cond:
                fake.requests.append((method, split.path[len(prefix) :] + "?" + split.query, body))
                failure = fake.fail_next.pop(0) if fake.fail_next else None
            if failure is not None:
                self.reply(failure, {"error": "server trouble"})
            elif fake.revoked or self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"error": "bad token"})
            elif not split.path.startswith(prefix + "/"):
                self.reply(404, {"error": "unknown run"})
            else:
                self.reply(*fake.handle(method, split.path[len(prefix) :], query, body))

        def reply(self, status: int, doc: Any) -> None:
            data = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def agent_env(server_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    env.update(
        SLIPSTREAM_SERVER=server_url,
        SLIPSTREAM_RUN_ID=RUN_ID,
        SLIPSTREAM_INSTANCE=INSTANCE,
        SLIPSTREAM_TOKEN=TOKEN,
        SLIPSTREAM_RETRY_SECONDS="3",
        SLIPSTREAM_BIND_HOST="127.0.0.1",
    )
    env.update(extra)
    return env


def agent(
    env: dict[str, str], *args: str, python: str = sys.executable, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(AGENT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(env: dict[str, str], *args: str, python: str = sys.executable) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [python, str(AGENT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def find_python38() -> str | None:
    candidates = [shutil.which("python3.8")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return candidate
    return None


PYTHONS = [pytest.param(sys.executable, id="py-current")]
_PY38 = find_python38()
if _PY38:
    PYTHONS.append(pytest.param(_PY38, id="py3.8"))


def part(component: str, text: str) -> dict[str, str]:
    return {"component": component, "text": text}


def run_daemon(
    fake: FakeServer, workdir: Path, python: str = sys.executable, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = agent_env(fake.url, SLIPSTREAM_WORKDIR=str(workdir))
    return agent(env, "run", python=python, timeout=timeout)


# --------------------------------------------------------------------------- the source


def test_agent_is_python38_stdlib_only() -> None:
    tree = ast.parse(AGENT.read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["ss-get"],
        ["ss-get", "a", "b"],
        ["ss-get", "--timeout"],
        ["ss-get", "--timeout", "soon", "k"],
        ["ss-get", "--timeout=-1", "k"],
        ["ss-get", "--bogus", "k"],
        ["ss-get", "--noblock=1", "k"],
        ["ss-set", "k"],
        ["ss-display"],
        ["ss-abort", "--cancel"],
        ["ss-random", "--size", "0"],
        ["ss-random", "--size=x"],
        ["ss-random", "a", "b"],
        ["ss-get-all", "web"],
        ["run", "extra"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = agent(agent_env(f"http://127.0.0.1:{dead_port()}"), *args)
    assert done.returncode == 2, done.stderr
    assert "usage" in done.stderr
    assert done.stdout == ""


def test_help_and_unconfigured() -> None:
    done = agent({"PATH": os.environ["PATH"]}, "ss-get", "--help")
    assert (done.returncode, done.stdout) == (
        0,
        "usage: ss-get [--timeout S] [--noblock] [--ignore-abort] KEY\n",
    )
    done = agent({"PATH": os.environ["PATH"]}, "ss-get", "k")
    assert done.returncode == 1
    assert "SLIPSTREAM_RUN_ID" in done.stderr


@pytest.mark.parametrize(
    ("args", "wait"),
    [
        (["--timeout", "5", "db.1:url"], "5"),
        (["--timeout=5", "db.1:url"], "5"),
        (["db.1:url", "--timeout", "5"], "5"),
        (["--", "db.1:url"], "30"),
        (["--noblock", "db.1:url"], "0"),
    ],
)
def test_ss_get_option_forms(fake: FakeServer, args: list[str], wait: str) -> None:
    fake.set_param("db.1:url", "pg://db:5432")
    done = agent(agent_env(fake.url), "ss-get", *args)
    assert (done.returncode, done.stdout, done.stderr) == (0, "pg://db:5432\n", "")
    assert [r[1] for r in fake.requests_to("GET", "/params/")] == [
        f"/params/db.1%3Aurl?wait={wait}"
    ]


def test_multi_call_by_program_name(fake: FakeServer, tmp_path: Path) -> None:
    link = tmp_path / "ss-get"
    link.symlink_to(AGENT)
    fake.set_param(f"{INSTANCE}:db_url", "mapped")
    done = subprocess.run(
        [sys.executable, str(link), "db_url"],
        env=agent_env(fake.url),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "mapped\n")
    # a bare key is sent as is (URL-quoted): the server resolves it
    assert fake.requests_to("GET", "/params/")[0][1] == "/params/db_url?wait=30"


# --------------------------------------------------------------------------- ss-get


def test_ss_get_returns_as_soon_as_value_is_set(fake: FakeServer) -> None:
    proc = spawn(agent_env(fake.url), "ss-get", "--timeout", "20", "db.1:url")
    eventually(lambda: bool(fake.requests_to("GET", "/params/")))
    time.sleep(0.3)
    assert proc.poll() is None  # blocked on the long poll
    set_at = time.monotonic()
    fake.set_param("db.1:url", "ready")
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - set_at < 2.0
    assert (proc.returncode, out, err) == (0, "ready\n", "")
    assert fake.requests_to("GET", "/params/")[0][1].endswith("?wait=20")


@pytest.mark.parametrize(
    ("key", "qualified"),
    [("db.1:url", "db.1:url"), ("db:url", "db.1:url"), ("url", "web.1:url")],
)
def test_ss_get_timeout_fails_as_slipstreams_did(
    fake: FakeServer, key: str, qualified: str
) -> None:
    # SlipStream's ss-get raised TimeoutException (exit status 9) with this message,
    # naming the key as Client._qualifyKey made it.
    started = time.monotonic()
    done = agent(agent_env(fake.url), "ss-get", "--timeout=1", key)
    assert time.monotonic() - started < 5
    assert done.returncode == 9
    assert done.stderr == (
        f"Error: Exceeded timeout limit of 1 waiting for key '{qualified}' to be set\n"
    )
    assert done.stdout == ""


def test_ss_get_waits_60_seconds_unless_told(fake: FakeServer) -> None:
    sys.path.insert(0, str(AGENT.parent))
    try:
        import slipstream_agent as module
    finally:
        sys.path.remove(str(AGENT.parent))
    assert module.get_timeout({}) == 60.0  # SlipStream's default
    assert module.get_timeout({"--timeout": "0"}) is None  # SlipStream's 0: no limit
    assert module.get_timeout({"--timeout": "5"}) == 5.0
    # The first long poll of a default ss-get asks for 30 s, the server's most.
    proc = spawn(agent_env(fake.url), "ss-get", "db.1:url")
    eventually(lambda: bool(fake.requests_to("GET", "/params/")))
    fake.set_param("db.1:url", "v")
    out, _ = proc.communicate(timeout=10)
    assert (proc.returncode, out) == (0, "v\n")
    assert fake.requests_to("GET", "/params/")[0][1] == "/params/db.1%3Aurl?wait=30"


def test_ss_get_noblock_unset_prints_an_empty_line(fake: FakeServer) -> None:
    done = agent(agent_env(fake.url), "ss-get", "--noblock", "db.1:url")
    assert (done.returncode, done.stdout, done.stderr) == (0, "\n", "")


def test_client_errors_are_not_retried(fake: FakeServer) -> None:
    fake.forbidden.add("db.1:password")
    done = agent(agent_env(fake.url), "ss-set", "db.1:password", "x")
    assert done.returncode == 7  # SlipStream's ClientError
    assert "HTTP 403" in done.stderr and "not allowed" in done.stderr
    assert len(fake.requests_to("PUT", "/params/")) == 1
    done = agent(agent_env(fake.url, SLIPSTREAM_TOKEN="wrong-token-xyz"), "ss-get", "k")
    assert done.returncode == 7
    assert "HTTP 401" in done.stderr and "wrong-token-xyz" not in done.stderr


# --------------------------------------------------------------------------- other commands


def test_ss_set_and_display(fake: FakeServer) -> None:
    env = agent_env(fake.url)
    assert agent(env, "ss-set", "url", "http://h:80/a b ü").returncode == 0
    assert agent(env, "ss-set", "--", "web.1:delta", "-5").returncode == 0
    assert agent(env, "ss-display", "deploying v2").returncode == 0
    puts = fake.requests_to("PUT", "/params/")
    assert puts == [
        ("PUT", "/params/url?", {"value": "http://h:80/a b ü"}),
        ("PUT", "/params/web.1%3Adelta?", {"value": "-5"}),
        ("PUT", "/params/statecustom?", {"value": "deploying v2"}),
    ]
    assert fake.params == {
        "web.1:url": "http://h:80/a b ü",
        "web.1:delta": "-5",
        "web.1:statecustom": "deploying v2",
    }


def test_ss_random(fake: FakeServer) -> None:
    env = agent_env(fake.url)
    default = agent(env, "ss-random").stdout.strip()
    assert len(default) == 12 and default.isalnum() and default.isascii()
    assert len(agent(env, "ss-random", "--size", "40").stdout.strip()) == 40
    done = agent(env, "ss-random", "--size=8", "password")
    assert done.returncode == 0
    assert len(done.stdout.strip()) == 8
    assert fake.params["web.1:password"] == done.stdout.strip()
    assert len(fake.requests_to("PUT", "/params/")) == 1


def test_ss_abort(fake: FakeServer) -> None:
    done = agent(agent_env(fake.url), "ss-abort", "db", "never came up")
    assert done.returncode == 0
    assert fake.aborts == [{"message": "db never came up", "cancel": False}]
    assert fake.state == "Aborted"
    other = FakeServer()
    try:
        assert agent(agent_env(other.url), "ss-abort", "--cancel", "stop it").returncode == 0
        assert other.aborts == [{"message": "stop it", "cancel": True}]
        assert other.state == "Cancelled"
    finally:
        other.close()


def test_ss_get_all(fake: FakeServer) -> None:
    fake.node_sizes["web"] = 3
    fake.set_param("web.1:url", "http://a")
    fake.set_param("web.2:url", "http://b")
    env = agent_env(fake.url)
    # As SlipStream's: an instance still unset at the timeout gets an empty value and a
    # message on stderr; the command itself succeeds.
    done = agent(env, "ss-get-all", "--timeout", "1", "web", "url")
    assert (done.returncode, done.stdout) == (
        0,
        "web.1:url http://a\nweb.2:url http://b\nweb.3:url \n",
    )
    assert done.stderr == ("Exceeded timeout limit of 1 waiting for key 'web.3:url' to be set\n")
    done = agent(env, "ss-get-all", "--noblock", "web", "url")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "web.1:url http://a\nweb.2:url http://b\nweb.3:url \n",
        "",
    )
    proc = spawn(env, "ss-get-all", "--timeout=20", "web", "url")
    time.sleep(0.3)
    fake.set_param("web.3:url", "http://c")
    out, _ = proc.communicate(timeout=10)
    assert (proc.returncode, out) == (
        0,
        "web.1:url http://a\nweb.2:url http://b\nweb.3:url http://c\n",
    )
    # --value alone: the values only, one per line.
    done = agent(env, "ss-get-all", "--value", "web", "url")
    assert (done.returncode, done.stdout) == (0, "http://a\nhttp://b\nhttp://c\n")


def test_ss_get_all_value_checks_every_instance_as_slipstreams_did(fake: FakeServer) -> None:
    fake.node_sizes["web"] = 2
    fake.set_param("web.1:ready", "true")
    fake.set_param("web.2:ready", "true")
    env = agent_env(fake.url)
    for args in (["--value", "true", "web", "ready"], ["web", "ready", "--value=true"]):
        done = agent(env, "ss-get-all", *args)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), args
    fake.set_param("web.2:ready", "false")
    done = agent(env, "ss-get-all", "--value", "true", "web", "ready")
    assert done.returncode == 1
    assert done.stderr == "RTP value on some components not equal to the expected value: true\n"
    assert done.stdout == "web.1:ready true\nweb.2:ready false\n"


# --------------------------------------------------------------------------- abort fence


def test_abort_fence_fails_fast(fake: FakeServer) -> None:
    fake.raise_abort("db.1 failed")
    env = agent_env(fake.url)
    started = time.monotonic()
    done = agent(env, "ss-get", "--timeout", "60", "db.1:url")
    # exit status 8: SlipStream's AbortException
    assert (done.returncode, done.stderr) == (8, "ss-get: run aborted: db.1 failed\n")
    done = agent(env, "ss-set", "url", "x")
    assert (done.returncode, done.stderr) == (8, "ss-set: run aborted: db.1 failed\n")
    assert time.monotonic() - started < 5


def test_ignore_abort_passes_the_fence(fake: FakeServer) -> None:
    fake.set_param("db.1:url", "pg://db")
    fake.raise_abort("db.1 failed")
    env = agent_env(fake.url)
    done = agent(env, "ss-get", "--ignore-abort", "db.1:url")
    assert (done.returncode, done.stdout) == (0, "pg://db\n")
    assert agent(env, "ss-set", "--ignore-abort", "url", "cleaned").returncode == 0
    assert agent(env, "ss-display", "--ignore-abort", "cleaning up").returncode == 0
    assert fake.params["web.1:url"] == "cleaned"
    assert fake.params["web.1:statecustom"] == "cleaning up"
    done = agent(env, "ss-get-all", "--ignore-abort", "--timeout", "1", "web", "url")
    assert (done.returncode, done.stdout) == (0, "web.1:url cleaned\n")


def test_abort_wakes_a_blocked_ss_get(fake: FakeServer) -> None:
    proc = spawn(agent_env(fake.url), "ss-get", "db.1:url")
    eventually(lambda: bool(fake.requests_to("GET", "/params/")))
    fake.raise_abort("timeout in Executing")
    _, err = proc.communicate(timeout=5)
    assert (proc.returncode, err) == (8, "ss-get: run aborted: timeout in Executing\n")


# --------------------------------------------------------------------------- retries


def test_retries_5xx(fake: FakeServer) -> None:
    fake.set_param("db.1:url", "v")
    fake.fail_next = [503, 502]
    done = agent(agent_env(fake.url), "ss-get", "db.1:url")
    assert (done.returncode, done.stdout) == (0, "v\n")
    assert len(fake.requests_to("GET", "/params/")) == 3


def test_retries_follow_the_server_file(tmp_path: Path) -> None:
    server_file = tmp_path / "server"
    server_file.write_text(f"http://127.0.0.1:{dead_port()}\n")
    env = agent_env(
        f"http://127.0.0.1:{dead_port()}",
        SLIPSTREAM_SERVER_FILE=str(server_file),
        SLIPSTREAM_RETRY_SECONDS="20",
    )
    proc = spawn(env, "ss-get", "--timeout", "30", "db.1:url")
    time.sleep(1.0)
    assert proc.poll() is None  # still retrying
    restarted = FakeServer()
    try:
        restarted.set_param("db.1:url", "after restart")
        server_file.write_text(restarted.url + "\n")
        out, err = proc.communicate(timeout=15)
        assert (proc.returncode, out, err) == (0, "after restart\n", "")
    finally:
        restarted.close()


def test_gives_up_when_server_stays_down() -> None:
    started = time.monotonic()
    env = agent_env(f"http://127.0.0.1:{dead_port()}", SLIPSTREAM_RETRY_SECONDS="1")
    done = agent(env, "ss-set", "url", "x")
    assert done.returncode == 4  # SlipStream's NetworkError
    assert done.stderr.startswith("ss-set: cannot reach the server at http://127.0.0.1:")
    assert time.monotonic() - started < 6


# --------------------------------------------------------------------------- the daemon


@pytest.mark.parametrize("python", PYTHONS)
def test_daemon_runs_the_recipe_and_votes(fake: FakeServer, tmp_path: Path, python: str) -> None:
    fake.set_param("db.1:url", "pg://db")
    fake.recipe["packages"] = ["sh"]
    fake.recipe["scripts"] = {
        "pre_install": [
            part("base", "echo pre-base >> order.txt"),
            part("web", "echo pre-web >> order.txt"),
        ],
        "post_install": [part("web", "echo post >> order.txt")],
        "deployment": [
            part(
                "web",
                "echo deploy >> order.txt\n"
                'ss-set url "http://$SLIPSTREAM_BIND_HOST:8080"\n'
                'ss-display "ready to serve"\n'
                'echo "db is $(ss-get --timeout 10 db.1:url)" >> order.txt\n'
                "echo to-stderr >&2\n",
            )
        ],
        "reporting": [part("web", 'echo hello > "$SLIPSTREAM_REPORT_DIR/report.txt"')],
    }
    workdir = tmp_path / "web.1"
    done = run_daemon(fake, workdir, python=python)
    assert done.returncode == 0, (done.stderr, (workdir / "agent.log").read_text())
    assert (workdir / "order.txt").read_text().split("\n") == [
        "pre-base",
        "pre-web",
        "post",
        "deploy",
        "db is pg://db",
        "",
    ]
    assert fake.params["web.1:url"] == "http://127.0.0.1:8080"
    assert fake.params["web.1:statecustom"] == "ready to serve"
    assert fake.votes == ["Provisioning", "Executing", "SendingReports"]
    assert fake.abort is None
    # the report: a .tar.gz unpacking into <instance>/
    [(content_type, archive)] = fake.reports
    assert content_type == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile("web.1/report.txt")
        assert member is not None and member.read() == b"hello\n"
    messages = [e["message"] for e in fake.events]
    assert len(messages) == 10  # five script parts, started + finished
    assert "web.1: script `deployment` started" in messages
    assert any(m.startswith("web.1: script `deployment` finished (exit 0, ") for m in messages)
    assert "web.1: script `pre_install` (part 1/2, component `base`) started" in messages
    assert "to-stderr" in (workdir / "logs" / "deployment.log").read_text()
    for command in ("ss-get", "ss-set", "ss-display", "ss-abort", "ss-random", "ss-get-all"):
        assert os.access(workdir / "bin" / command, os.X_OK)
    log = (workdir / "agent.log").read_text()
    assert "run is over (Done)" in log
    assert TOKEN not in log and TOKEN not in done.stderr
    assert not (workdir / "agent.pid").exists()
    states = [r[1] for r in fake.requests_to("GET", "/state")]
    assert "/state?wait=30&after=Ready" in states  # long-polls, not sleep loops


def test_daemon_waits_for_each_state(fake: FakeServer, tmp_path: Path) -> None:
    fake.auto_advance = False
    fake.recipe["built"] = True  # install steps are skipped on a built image
    fake.recipe["scripts"] = {
        "pre_install": [part("web", "echo pre >> order.txt")],
        "deployment": [part("web", "echo deploy >> order.txt")],
        "reporting": [part("web", "echo report >> order.txt")],
    }
    workdir = tmp_path / "w"
    proc = spawn(agent_env(fake.url, SLIPSTREAM_WORKDIR=str(workdir)), "run")
    eventually(lambda: fake.votes == ["Provisioning"])
    time.sleep(0.5)
    assert not (workdir / "order.txt").exists()
    fake.set_state("Executing")
    eventually(lambda: fake.votes == ["Provisioning", "Executing"])
    assert (workdir / "order.txt").read_text() == "deploy\n"
    fake.set_state("Cancelled")  # terminated before SendingReports: no reporting
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert (workdir / "order.txt").read_text() == "deploy\n"
    assert fake.reports == []


def test_failing_script_aborts_with_its_last_stderr_line(fake: FakeServer, tmp_path: Path) -> None:
    fake.recipe["scripts"] = {
        "deployment": [
            part(
                "web",
                'echo "starting"\necho "first problem" >&2\necho "disk full" >&2\n'
                'echo "" >&2\nexit 3\necho never >> order.txt\n',
            )
        ],
    }
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    assert fake.aborts == [
        {"message": "script `deployment` of `web.1` failed (exit 3): disk full", "cancel": False}
    ]
    assert fake.votes == ["Provisioning"]
    assert fake.events[-1]["level"] == "error"
    assert not (tmp_path / "w" / "order.txt").exists()


def test_script_failing_on_the_abort_fence_keeps_the_first_message(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.recipe["scripts"] = {
        "deployment": [part("web", 'ss-abort "db never came up"\nss-get db.1:url\n')],
    }
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    assert fake.aborts == [{"message": "db never came up", "cancel": False}]
    log = (tmp_path / "w" / "logs" / "deployment.log").read_text()
    assert "ss-get: run aborted: db never came up" in log


def test_missing_package_on_local_aborts(fake: FakeServer, tmp_path: Path) -> None:
    fake.recipe["packages"] = ["sh", "no-such-package-xyz"]
    fake.recipe["scripts"] = {
        "pre_install": [part("web", "echo pre >> order.txt")],
        "deployment": [part("web", "echo deploy >> order.txt")],
    }
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    assert [a["message"] for a in fake.aborts] == [
        "package `no-such-package-xyz` is not on this host "
        "(local cloud: packages must already be installed)"
    ]
    assert (tmp_path / "w" / "order.txt").read_text() == "pre\n"


def test_shebang_script(fake: FakeServer, tmp_path: Path) -> None:
    fake.recipe["scripts"] = {
        "deployment": [
            part(
                "web",
                "#!/usr/bin/env python3\n"
                "import os, subprocess\n"
                "subprocess.run(['ss-set', 'url', 'py:' + os.environ['SLIPSTREAM_INSTANCE']],"
                " check=True)\n"
                "open('cwd.txt', 'w').write(os.getcwd())\n",
            )
        ],
    }
    workdir = tmp_path / "w"
    done = run_daemon(fake, workdir)
    assert done.returncode == 0, (workdir / "agent.log").read_text()
    assert fake.params["web.1:url"] == "py:web.1"
    assert (workdir / "cwd.txt").read_text() == str(workdir)


def test_stop_kills_the_process_group(fake: FakeServer, tmp_path: Path) -> None:
    fake.recipe["scripts"] = {
        "deployment": [part("web", "sleep 300 &\necho $! > sleep.pid\nwait\n")],
    }
    workdir = tmp_path / "w"
    env_file = tmp_path / "agent.env"
    env_file.write_text(
        "# agent settings\n"
        f"SLIPSTREAM_SERVER={fake.url}\n"
        f"export SLIPSTREAM_RUN_ID={RUN_ID}\n"
        f"SLIPSTREAM_INSTANCE='{INSTANCE}'\n"
        f'SLIPSTREAM_TOKEN="{TOKEN}"\n'
        f"SLIPSTREAM_WORKDIR={workdir}\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    proc = spawn(clean, "run", "--env-file", str(env_file))
    eventually(
        lambda: (
            (workdir / "sleep.pid").exists()
            and bool(workdir.joinpath("sleep.pid").read_text().strip())
        )
    )
    sleep_pid = int((workdir / "sleep.pid").read_text())
    daemon_pid = int((workdir / "agent.pid").read_text())
    assert daemon_pid == proc.pid
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    done = agent(clean, "stop", "--env-file", str(env_file), "--grace", "5")
    assert done.returncode == 0, done.stderr
    proc.communicate(timeout=10)
    assert proc.returncode is not None and proc.returncode != 0
    eventually(lambda: process_gone(sleep_pid), timeout=5)
    assert not (workdir / "agent.pid").exists()
    # stopping again is harmless
    assert agent(clean, "stop", "--env-file", str(env_file)).returncode == 0


# --------------------------------------------------------------------------- SlipStream's commands


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ss-get", "--endpoint", "https://nuv.la", "k"], "--endpoint (the SlipStream server"),
        (["ss-get", "--endpoint=https://nuv.la", "k"], "--endpoint (the SlipStream server"),
        (["ss-set", "-u", "bob", "k", "v"], "SlipStream's login options are not needed"),
        (["ss-get", "--password", "x", "k"], "SlipStream's login options are not needed"),
        (["ss-get", "--cookie=/tmp/c", "k"], "SlipStream's login options are not needed"),
        (["ss-get", "--run", "other-run", "k"], "a script can reach only its own run (run-42)"),
        (["ss-abort", "--cancel"], "--cancel without a reason cleared the abort flag"),
        (["ss-get", "--bogus", "k"], "unknown option --bogus"),
        (["ss-get-all", "--v", "web", "url"], "option --v is ambiguous (--value, --verbose)"),
        (["ss-get-all", "--value", "a", "b", "c", "d"], "expects NODE and KEY"),
    ],
)
def test_slipstream_options_without_use_here_are_refused_with_what_to_do(
    fake: FakeServer, args: list[str], message: str
) -> None:
    done = agent(agent_env(fake.url), *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert fake.requests == []


def test_slipstream_option_forms_are_accepted(fake: FakeServer) -> None:
    fake.set_param("web.1:url", "u")
    env = agent_env(fake.url)
    for args in (
        ["ss-get", "-v", "url"],
        ["ss-get", "-vv", "--time", "5", "url"],  # optparse took unambiguous prefixes
        ["ss-get", "--run", RUN_ID, "url"],
        ["ss-get", f"--run={RUN_ID}", "--noblo", "--ignore", "url"],
    ):
        done = agent(env, *args)
        assert (done.returncode, done.stdout) == (0, "u\n"), (args, done.stderr)
    assert len(agent(env, "ss-random", "-s", "8").stdout.strip()) == 8
    assert len(agent(env, "ss-random", "-s20").stdout.strip()) == 20
    done = agent(env, "ss-abort")
    assert done.returncode == 0
    assert fake.aborts == [{"message": "(unspecified)", "cancel": False}]


# --------------------------------------------------------------------------- failures and reports


def report_files(archive: bytes) -> dict[str, bytes]:
    """Member name → content of a report archive (folders left out)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_sh_x_failure_names_the_real_error_and_the_report_holds_the_logs(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.recipe["scripts"] = {
        "deployment": [
            part(
                "web",
                "#!/bin/sh -xe\necho preparing\ncp /no/such/file here\necho never\n",
            )
        ],
        "reporting": [part("web", 'echo gathered > "$SLIPSTREAM_REPORT_DIR/notes.txt"\n')],
    }
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    [abort] = fake.aborts
    assert abort["message"].startswith("script `deployment` of `web.1` failed (exit 1): cp: ")
    assert "/no/such/file" in abort["message"]
    assert "+ cp" not in abort["message"]  # the trace line before it is skipped
    # The failed instance still sends its report: reporting ran, and every script's log,
    # timestamped line by line, is in it.
    [(_, archive)] = fake.reports
    files = report_files(archive)
    assert files["web.1/notes.txt"] == b"gathered\n"
    log = files["web.1/logs/deployment.log"].decode()
    assert "+ echo preparing" in log and "/no/such/file" in log
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} err\| \+ cp ", log, re.M)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} out\| preparing$", log, re.M)
    assert "web.1/logs/agent.log" in files


def test_trace_lines_are_the_message_only_when_nothing_else_was_printed(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.recipe["scripts"] = {"deployment": [part("web", "#!/bin/sh -x\nfalse\nexit 5\n")]}
    run_daemon(fake, tmp_path / "w")
    assert fake.aborts[0]["message"] == "script `deployment` of `web.1` failed (exit 5): + exit 5"


def test_an_abort_while_a_script_runs_sends_the_logs_so_far(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.recipe["scripts"] = {
        "deployment": [part("web", "echo working on it\nsleep 30\n")],
    }
    workdir = tmp_path / "w"
    proc = spawn(agent_env(fake.url, SLIPSTREAM_WORKDIR=str(workdir)), "run")
    try:
        eventually(lambda: "working on it" in _read(workdir / "logs" / "deployment.log"))
        fake.raise_abort("timeout: run stayed in Executing longer than 6s; not voted: web.1")
        eventually(lambda: bool(fake.reports))
        files = report_files(fake.reports[0][1])
        assert "working on it" in files["web.1/logs/deployment.log"].decode()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon leads its group: the sleep too
        proc.communicate(timeout=10)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_report_over_the_limit_aborts_naming_its_size(fake: FakeServer, tmp_path: Path) -> None:
    fake.recipe["scripts"] = {
        "reporting": [
            part(
                "web",
                'head -c 55000000 /dev/urandom > "$SLIPSTREAM_REPORT_DIR/huge.bin"\n'
                "echo reported\n",
            )
        ],
    }
    done = run_daemon(fake, tmp_path / "w", timeout=60)
    assert done.returncode == 1
    [abort] = fake.aborts
    assert re.fullmatch(
        r"report of `web\.1` is 52\.\d MiB, over the 50 MiB limit "
        r"\(the script logs were sent alone\)",
        abort["message"],
    ), abort["message"]
    # The logs were sent alone, so what happened stays readable.
    [(_, archive)] = fake.reports
    files = report_files(archive)
    assert "web.1/huge.bin" not in files
    assert "reported" in files["web.1/logs/reporting.log"].decode()
    assert not list((tmp_path / "w").glob("report-*.tar.gz"))  # temporary archives removed


def test_a_refused_report_aborts_naming_the_cause(fake: FakeServer, tmp_path: Path) -> None:
    fake.report_refusal = (400, "report is over 52428800 bytes")
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    assert fake.aborts == [
        {
            "message": "report of `web.1` was refused: report upload: "
            "report is over 52428800 bytes (HTTP 400)",
            "cancel": False,
        }
    ]


def test_any_unexpected_4xx_ends_in_an_abort_naming_it(fake: FakeServer, tmp_path: Path) -> None:
    original = fake.handle

    def refuse_votes(method: str, path: str, query: dict[str, str], body: Any) -> Any:
        if path == "/votes" and body["state"] == "Executing":
            return 400, {"error": "cannot vote Executing: the run is in Provisioning"}
        return original(method, path, query, body)

    fake.handle = refuse_votes  # type: ignore[method-assign]
    done = run_daemon(fake, tmp_path / "w")
    assert done.returncode == 1
    assert fake.aborts == [
        {
            "message": "agent of `web.1`: vote Executing: cannot vote Executing: "
            "the run is in Provisioning (HTTP 400)",
            "cancel": False,
        }
    ]


def test_a_destroyed_run_ends_the_daemon_cleanly(fake: FakeServer, tmp_path: Path) -> None:
    fake.auto_advance = False
    workdir = tmp_path / "w"
    proc = spawn(agent_env(fake.url, SLIPSTREAM_WORKDIR=str(workdir)), "run")
    eventually(lambda: fake.votes == ["Provisioning"])
    fake.revoked = True  # destroy retired the token: every answer is 401 from now on
    fake.set_state("Executing")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    log = (workdir / "agent.log").read_text()
    assert "the server no longer knows this instance's token" in log
    assert fake.aborts == []
