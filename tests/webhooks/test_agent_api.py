"""The agent (coordination) HTTP API of webhooks/agent_api.py (DESIGN.md §4, §5, §11).

Two runs of the `webapp` deployment (db ×1, web ×2, lb ×1) live in one SQLite store served
by a real :class:`HttpServer`, on 127.0.0.1 and on a Unix socket. Every refused request is
checked for its exact status code *and* for leaving the store untouched (parameters,
abort flag, votes, events, reports of both runs). The refusal tests run over both
listeners; the long-poll tests over TCP.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

import engine.coordination.coordinator as coordinator_module
import webhooks.agent_api as agent_api
from engine.coordination.coordinator import STATES, Coordinator, token_hash
from engine.coordination.hub import Hub
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from engine.recipes.model import Deployment
from engine.runs.launcher import token_file
from engine.runs.manager import RunManager
from engine.store.runstore import RunStore
from engine.terraform.binary import TerraformExe
from tests.conftest import REPO
from webhooks.app import create_app
from webhooks.server import HttpServer

PREFIX = "/agent/v1/runs/"
INSTANCES = ("db.1", "lb.1", "web.1", "web.2")
# Long-polls that should end early must end well before their wait.
PROMPT_S = 2.0


# -- environment ------------------------------------------------------------------------


@dataclass
class Env:
    home: Path
    db_file: Path
    store: RunStore
    hub: Hub
    manager: RunManager
    coordinator: Coordinator
    app: Any
    server: HttpServer
    deployment: Deployment
    clouds: CloudsConfig


@dataclass
class Runs:
    a: str
    b: str
    tokens: dict[str, dict[str, str]]  # run id → instance → raw token


@dataclass
class Answer:
    status: int
    raw: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("agent-api-home")
    db_file = home / "runs.db"
    store = RunStore.open(f"sqlite:///{db_file}")
    hub = Hub()
    # create() compiles and stores a run; it never starts Terraform.
    manager = RunManager(home, store, hub, TerraformExe(["false"], "env"))
    coordinator = manager.coordinator
    app = create_app(home, coordinator)
    server = HttpServer(
        app, unix=home / "sockets" / "agent.sock", tcp=("127.0.0.1", 0), on_loop=hub.attach
    ).start()
    clouds = CloudsConfig.default()
    deployment = RecipeLoader(None, clouds).deployment("webapp", require_values=True)
    try:
        yield Env(home, db_file, store, hub, manager, coordinator, app, server, deployment, clouds)
    finally:
        server.stop()


@pytest.fixture
def runs(env: Env) -> Runs:
    """Two fresh runs in the same store, with every instance's raw token."""
    a = env.manager.create(env.deployment, env.clouds, user="alice")
    b = env.manager.create(env.deployment, env.clouds, user="bob")
    tokens = {
        run: {
            inst["name"]: token_file(env.home, run, inst["name"]).read_text("utf-8").strip()
            for inst in env.store.instances(run)
        }
        for run in (a, b)
    }
    assert set(tokens[a]) == set(INSTANCES)
    return Runs(a, b, tokens)


# -- transports -------------------------------------------------------------------------


Call = Callable[..., Answer]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def http_call(
    server: HttpServer,
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    data: bytes | None = None,
    chunked: bool = False,
    timeout: float = 15.0,
    unix: bool = False,
    body_iter: Iterator[bytes] | None = None,
) -> Answer:
    """One request over a real socket to the server (TCP, or its Unix socket)."""
    conn: http.client.HTTPConnection
    if unix:
        conn = UnixHTTPConnection(server.unix_url[len("unix:") :], timeout)
    else:
        parts = urlsplit(server.tcp_url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        sent.setdefault("Content-Type", "application/json")
    try:
        if body_iter is not None:  # sent as it comes, never whole in memory
            sent.pop("Transfer-Encoding", None)
            conn.request(method, path, body=body_iter, headers=sent, encode_chunked=True)
        elif chunked:
            sent["Transfer-Encoding"] = "chunked"
            conn.request(method, path, body=iter([data or b""]), headers=sent, encode_chunked=True)
        else:
            conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, response.read(), headers)
    finally:
        conn.close()


@pytest.fixture(params=["tcp", "unix"])
def call(request: pytest.FixtureRequest, env: Env) -> Call:
    unix = request.param == "unix"
    return lambda *a, **k: http_call(env.server, *a, unix=unix, **k)


@pytest.fixture
def net(env: Env) -> Call:
    """Real HTTP only."""
    return lambda *a, **k: http_call(env.server, *a, **k)


def url(run: str, tail: str) -> str:
    return PREFIX + run + tail


def pkey(key: str) -> str:
    """A key as the agent puts it in a URL (``:`` quoted too)."""
    return "/params/" + quote(key, safe="")


# -- snapshots --------------------------------------------------------------------------


def snapshot(env: Env, runs: Runs) -> dict[str, Any]:
    """Everything an agent request could change, for both runs."""
    out: dict[str, Any] = {}
    for run in (runs.a, runs.b):
        record = env.store.get_run(run)
        assert record is not None
        reports_dir = env.home / "runs" / run / "reports"
        out[run] = {
            "params": env.store.params(run),
            "state": record.state,
            "abort": record.abort_message,
            "cancelled": record.cancelled,
            "votes": {state: env.store.voters(run, state) for state in STATES},
            "events": [(e.id, e.kind, e.message, e.data) for e in env.store.events(run)],
            "reports": env.store.reports(run),
            "report_files": sorted(p.name for p in reports_dir.glob("*"))
            if reports_dir.exists()
            else [],
        }
    return out


def timed(fn: Callable[[], Answer]) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = fn()
    return answer, time.monotonic() - started


def later(delay: float, fn: Callable[[], Any]) -> threading.Thread:
    """Run ``fn`` after ``delay`` seconds on another thread (started already)."""

    def body() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


# -- the agent file -----------------------------------------------------------------------


def test_agent_file_served_without_authentication(env: Env, net: Call) -> None:
    answer = net("GET", "/agent/v1/agent.py")
    assert answer.status == 200
    assert answer.raw == agent_api.AGENT_FILE.read_bytes()
    assert answer.raw.startswith(b"#!") or b"def main" in answer.raw
    assert answer.headers.get("content-type", "").startswith("text/x-python")


def test_agent_file_ignores_a_bad_token(call: Call) -> None:
    answer = call("GET", "/agent/v1/agent.py", headers={"Authorization": "Bearer nope"})
    assert answer.status == 200
    assert answer.raw == agent_api.AGENT_FILE.read_bytes()


# -- authentication ---------------------------------------------------------------------


BAD_AUTH = [
    pytest.param(None, id="no-header"),
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="scheme-space"),
    pytest.param("Bearer    ", id="scheme-blanks"),
    pytest.param("Basic d2ViOnB3", id="basic"),
    pytest.param("Token {token}", id="other-scheme"),
    pytest.param("{token}", id="raw-token"),
    pytest.param("Bearer{token}", id="no-space"),
    pytest.param("Bearer {token}x", id="altered-token"),
    pytest.param("Bearer not-a-token-of-anyone", id="unknown-token"),
    pytest.param("Bearer {hash}", id="the-stored-hash"),
]


def protected_requests(run: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, extra request arguments) for every authenticated route."""
    return [
        ("GET", url(run, pkey("web.1:greeting")), {}),
        ("GET", url(run, "/params/db_url?wait=0"), {}),
        ("PUT", url(run, pkey("web.1:url")), {"body": {"value": "http://x"}}),
        ("GET", url(run, "/nodes/web/params/url?wait=0"), {}),
        ("POST", url(run, "/abort"), {"body": {"message": "forged abort"}}),
        ("GET", url(run, "/state"), {}),
        ("POST", url(run, "/votes"), {"body": {"state": "Provisioning"}}),
        ("POST", url(run, "/events"), {"body": {"message": "forged"}}),
        ("POST", url(run, "/reports"), {"data": b"tar", "headers": {}}),
        ("GET", url(run, "/recipe"), {}),
    ]


@pytest.mark.parametrize("header", BAD_AUTH)
def test_bad_authorization_is_401_and_changes_nothing(
    env: Env, runs: Runs, call: Call, header: str | None
) -> None:
    token = runs.tokens[runs.a]["web.1"]
    before = snapshot(env, runs)
    for method, path, extra in protected_requests(runs.a):
        headers = dict(extra.pop("headers", {}) or {})
        if header is not None:
            headers["Authorization"] = header.format(token=token, hash=token_hash(token))
        answer = call(method, path, headers=headers, **extra)
        assert answer.status == 401, (method, path, answer.status, answer.raw)
        assert "error" in answer.json
        assert token not in answer.raw.decode("utf-8")
    assert snapshot(env, runs) == before


def test_token_of_another_run_is_403_and_changes_nothing(env: Env, runs: Runs, call: Call) -> None:
    for name in INSTANCES:
        other = runs.tokens[runs.b][name]
        before = snapshot(env, runs)
        for method, path, extra in protected_requests(runs.a):
            answer = call(method, path, token=other, **extra)
            assert answer.status == 403, (name, method, path, answer.status, answer.raw)
            assert "error" in answer.json
        assert snapshot(env, runs) == before


def test_token_on_an_unknown_run_is_403(env: Env, runs: Runs, call: Call) -> None:
    token = runs.tokens[runs.a]["db.1"]
    before = snapshot(env, runs)
    for method, path, extra in protected_requests("no-such-run"):
        answer = call(method, path, token=token, **extra)
        assert answer.status == 403, (method, path, answer.status, answer.raw)
    assert snapshot(env, runs) == before


def test_each_token_works_on_its_own_run(env: Env, runs: Runs, call: Call) -> None:
    for run in (runs.a, runs.b):
        for name in INSTANCES:
            answer = call("GET", url(run, pkey("nodename")), token=runs.tokens[run][name])
            assert answer.status == 200, answer.raw
            assert answer.json == {"key": f"{name}:nodename", "value": name.split(".")[0]}
            recipe = call("GET", url(run, "/recipe"), token=runs.tokens[run][name])
            assert recipe.status == 200
            assert recipe.json["instance"] == name


# -- ss-set refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("web.1:nosuch", 403),  # undeclared
        ("nosuch", 403),  # undeclared, bare
        ("db.1:url", 403),  # another instance's output
        ("web.2:url", 403),  # a sibling's output
        ("web.9:url", 403),  # another (non-existent) instance
        ("web.1:db_url", 403),  # a mapped input
        ("db_url", 403),  # the same, bare
        ("web.1:greeting", 403),  # an input with a value
        ("web.1:hostname", 403),  # an engine-set built-in
        ("web.1:nodename", 403),
        ("web:multiplicity", 403),  # node-wide
        ("ss:state", 403),  # run-wide, engine-owned
        ("ss:abort", 403),
        ("web.0:url", 400),  # malformed
        ("1web.1:url", 400),
        ("Web.1:url", 403),  # node names may have upper case: another (unknown) node's
        ("db:url", 403),  # db.1:url, as SlipStream qualified it
        ("web.1:", 400),
        (":url", 400),
        ("web.1:url:x", 400),
        ("web.1:bad key", 400),
        ("web.1:url/../../x", 400),
    ],
)
def test_put_refused_changes_nothing(
    env: Env, runs: Runs, call: Call, key: str, status: int
) -> None:
    before = snapshot(env, runs)
    answer = call(
        "PUT", url(runs.a, pkey(key)), token=runs.tokens[runs.a]["web.1"], body={"value": "x"}
    )
    assert answer.status == status, answer.raw
    assert "error" in answer.json
    assert snapshot(env, runs) == before


def test_put_allowed_keys(env: Env, runs: Runs, call: Call) -> None:
    token = runs.tokens[runs.a]["web.1"]
    for key, stored in [
        ("web.1:url", "web.1:url"),
        ("url", "web.1:url"),
        ("statecustom", "web.1:statecustom"),
        ("url.admin", "web.1:url.admin"),
        ("ss:url.service", "ss:url.service"),
    ]:
        answer = call("PUT", url(runs.a, pkey(key)), token=token, body={"value": f"v-{key}"})
        assert answer.status == 200, (key, answer.raw)
        assert answer.json == {"key": stored}
        assert env.store.get_param(runs.a, stored) == f"v-{key}"
        assert env.store.get_param(runs.b, stored) is None
    # Values may be set again; readers get the latest.
    assert call("PUT", url(runs.a, pkey("url")), token=token, body={"value": "1"}).status == 200
    assert call("GET", url(runs.a, pkey("url")), token=token).json["value"] == "1"


# -- ss-get refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("web.1:nosuch", 404),
        ("nosuch", 404),
        ("web.9:url", 404),
        ("db.2:url", 404),
        ("nosuch.1:url", 404),
        ("web:nosuch", 404),
        ("ss:nosuch", 404),
        ("ss.1:state", 404),
        ("web.0:url", 400),
        ("1web.1:url", 400),
        ("Web.1:url", 404),  # a well-formed name, but no such node
        ("web.1:", 400),
        (":url", 400),
        ("web.1:url:x", 400),
        ("web.1:bad key", 400),
    ],
)
def test_get_refused_changes_nothing(
    env: Env, runs: Runs, call: Call, key: str, status: int
) -> None:
    before = snapshot(env, runs)
    answer = call("GET", url(runs.a, pkey(key) + "?wait=0"), token=runs.tokens[runs.a]["web.1"])
    assert answer.status == status, answer.raw
    assert "error" in answer.json
    assert snapshot(env, runs) == before
    assert env.hub.waits_of(runs.a) == {}


def bounded(fn: Callable[[], Answer], limit: float) -> Answer | None:
    """``fn()`` on a daemon thread; None when it has not answered within ``limit`` s."""
    box: list[Answer] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(limit)
    return box[0] if box else None


@pytest.mark.parametrize("wait", ["abc", "", "1s", "nan"])
def test_bad_wait_is_400(env: Env, runs: Runs, call: Call, wait: str) -> None:
    token = runs.tokens[runs.a]["web.1"]
    before = snapshot(env, runs)
    try:
        for path in (
            pkey("db_url") + "?wait=",
            "/nodes/web/params/url?wait=",
            "/state?after=Initializing&wait=",
        ):
            target = url(runs.a, path + wait)
            answer = bounded(functools.partial(call, "GET", target, token=token), PROMPT_S)
            assert answer is not None, f"GET {target} did not answer within {PROMPT_S}s"
            assert answer.status == 400, (target, answer.status, answer.raw)
        assert snapshot(env, runs) == before
    finally:
        # A request stuck in its wait loop ends at the abort fence or a state change.
        env.coordinator.abort(runs.a, "test cleanup")
        env.coordinator.set_state(runs.a, "Done")


def test_get_read_only_keys(env: Env, runs: Runs, call: Call) -> None:
    token = runs.tokens[runs.a]["web.2"]
    expect = {
        "web.2:greeting": ("web.2:greeting", "Hello"),
        "greeting": ("web.2:greeting", "Hello"),
        "id": ("web.2:id", "2"),
        "web:multiplicity": ("web:multiplicity", "2"),
        "web:ids": ("web:ids", "1,2"),
        "ss:state": ("ss:state", "Initializing"),
        "ss:category": ("ss:category", "Deployment"),
        "db.1:message": ("db.1:message", "hello from the database"),
    }
    for key, (stored, value) in expect.items():
        answer = call("GET", url(runs.a, pkey(key)), token=token)
        assert answer.status == 200, (key, answer.raw)
        assert answer.json == {"key": stored, "value": value}


# -- values -----------------------------------------------------------------------------


def test_value_size_limit(env: Env, runs: Runs, net: Call) -> None:
    token = runs.tokens[runs.a]["db.1"]
    path = url(runs.a, pkey("db.1:url"))
    for too_big in ("x" * 4097, "é" * 2049, "x" * 100_000):
        before = snapshot(env, runs)
        answer = net("PUT", path, token=token, body={"value": too_big})
        assert answer.status == 400, answer.raw
        assert snapshot(env, runs) == before
    for fits in ("y" * 4096, "é" * 2048, ""):
        answer = net("PUT", path, token=token, body={"value": fits})
        assert answer.status == 200, answer.raw
        assert env.store.get_param(runs.a, "db.1:url") == fits
        got = net("GET", path, token=token)
        assert got.status == 200
        assert got.json == {"key": "db.1:url", "value": fits}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"not json", "application/json"),
        (b"{", "application/json"),
        (b"", "application/json"),
        (b"", None),
        (b"x", "text/plain"),
        (b'"value"', "application/json"),
        (b'["v"]', "application/json"),
        (b"{}", "application/json"),
        (b'{"val": "x"}', "application/json"),
        (b'{"value": null}', "application/json"),
        (b'{"value": 42}', "application/json"),
        (b'{"value": true}', "application/json"),
        (b'{"value": ["x"]}', "application/json"),
        (b'{"value": {"x": 1}}', "application/json"),
        (b'{"value": "\\ud800"}', "application/json"),  # lone surrogate: not storable text
    ],
)
def test_put_bad_body_is_400(
    env: Env, runs: Runs, call: Call, data: bytes, content_type: str | None
) -> None:
    before = snapshot(env, runs)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = call(
        "PUT",
        url(runs.a, pkey("url")),
        token=runs.tokens[runs.a]["web.1"],
        headers=headers,
        data=data,
    )
    assert answer.status == 400, answer.raw
    assert "error" in answer.json
    assert snapshot(env, runs) == before


# -- abort fence ------------------------------------------------------------------------


def test_abort_fence(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    env.coordinator.publish(a, {"db.1:url": "http://db"})
    first = net("POST", url(a, "/abort"), token=tok["db.1"], body={"message": "db broke"})
    assert first.status == 200
    assert first.json == {"raised": True}
    record = env.store.get_run(a)
    assert record is not None and record.abort_message == "db broke"
    assert not record.cancelled
    assert env.store.get_param(a, "ss:abort") == "db broke"
    fenced = {"error": "aborted", "abort": "db broke"}

    def check_fenced(message: str) -> None:
        before = snapshot(env, runs)
        for name, keys in (
            ("web.1", ("db_url", "db.1:url", "greeting", "web.2:url", "ss:state")),
            ("db.1", ("url", "message", "web:ids", "ss:abort")),
        ):
            token = tok[name]
            for key in keys:
                answer = net("GET", url(a, pkey(key) + "?wait=0"), token=token)
                assert answer.status == 409, (key, answer.raw)
                assert answer.json == {"error": "aborted", "abort": message}
            answer = net("GET", url(a, "/nodes/web/params/greeting"), token=token)
            assert answer.status == 409
            assert answer.json == {"error": "aborted", "abort": message}
        for key, token in (("url", tok["web.1"]), ("db.1:url", tok["db.1"])):
            answer = net("PUT", url(a, pkey(key)), token=token, body={"value": "late"})
            assert answer.status == 409, (key, answer.raw)
            assert answer.json == {"error": "aborted", "abort": message}
        assert snapshot(env, runs) == before

    check_fenced("db broke")
    assert net("GET", url(a, "/params/db_url"), token=tok["web.1"]).json == fenced

    # A second abort (even a cancel) keeps the first message.
    events_before = [e.kind for e in env.store.events(a)]
    second = net(
        "POST", url(a, "/abort"), token=tok["web.2"], body={"message": "later", "cancel": True}
    )
    assert second.status in (200, 409)
    if second.status == 200:
        assert second.json == {"raised": False}
    record = env.store.get_run(a)
    assert record is not None and record.abort_message == "db broke"
    assert not record.cancelled
    assert env.store.get_param(a, "ss:abort") == "db broke"
    assert [e.kind for e in env.store.events(a)] == events_before
    assert [e.message for e in env.store.events(a) if e.kind == "abort"] == ["db broke"]
    check_fenced("db broke")

    state = net("GET", url(a, "/state"), token=tok["lb.1"])
    assert state.status == 200
    assert state.json == {"state": "Initializing", "abort": "db broke"}

    # The other run is not fenced.
    b, tok_b = runs.b, runs.tokens[runs.b]
    assert net("PUT", url(b, pkey("url")), token=tok_b["db.1"], body={"value": "ok"}).status == 200
    got = net("GET", url(b, pkey("db_url")), token=tok_b["web.1"])
    assert got.status == 200 and got.json == {"key": "db.1:url", "value": "ok"}
    record_b = env.store.get_run(b)
    assert record_b is not None and record_b.abort_message is None


def test_abort_default_message_and_cancel(env: Env, runs: Runs, call: Call) -> None:
    answer = call(
        "POST", url(runs.a, "/abort"), token=runs.tokens[runs.a]["web.2"], body={"cancel": True}
    )
    assert answer.status == 200
    record = env.store.get_run(runs.a)
    assert record is not None
    assert record.abort_message is not None and "web.2" in record.abort_message
    assert record.cancelled


def test_concurrent_aborts_raise_once(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    answers: list[Answer] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        name = INSTANCES[i % len(INSTANCES)]
        answer = net("POST", url(a, "/abort"), token=tok[name], body={"message": f"m{i}"})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(a.status for a in answers) == [200] * 8
    raised = [a for a in answers if a.json == {"raised": True}]
    assert len(raised) == 1
    record = env.store.get_run(a)
    assert record is not None and record.abort_message is not None
    assert [e.message for e in env.store.events(a) if e.kind == "abort"] == [record.abort_message]
    assert env.store.get_param(a, "ss:abort") == record.abort_message


def test_abort_message_is_a_value_of_at_most_4096_bytes(env: Env, runs: Runs, call: Call) -> None:
    """`ss:abort` is a runtime parameter: at most 4096 bytes of text (DESIGN §4)."""
    message = "é" * 5000
    answer = call(
        "POST", url(runs.a, "/abort"), token=runs.tokens[runs.a]["db.1"], body={"message": message}
    )
    assert answer.status == 200
    stored = env.store.get_param(runs.a, "ss:abort")
    assert stored is not None and message.startswith(stored) and stored
    assert len(stored.encode("utf-8")) <= 4096
    record = env.store.get_run(runs.a)
    assert record is not None and record.abort_message == stored


def test_abort_bad_body_is_400_and_not_raised(env: Env, runs: Runs, call: Call) -> None:
    before = snapshot(env, runs)
    for data in (b"nope", b"[]", b""):
        answer = call(
            "POST",
            url(runs.a, "/abort"),
            token=runs.tokens[runs.a]["db.1"],
            headers={"Content-Type": "application/json"},
            data=data,
        )
        assert answer.status == 400, answer.raw
    assert snapshot(env, runs) == before


def test_abort_wakes_a_blocked_get(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    later(
        0.3,
        lambda: net("POST", url(a, "/abort"), token=tok["db.1"], body={"message": "stop"}),
    )
    answer, took = timed(lambda: net("GET", url(a, "/params/db_url?wait=10"), token=tok["web.1"]))
    assert answer.status == 409
    assert answer.json == {"error": "aborted", "abort": "stop"}
    assert 0.2 < took < PROMPT_S


# -- resolution and long-polls ----------------------------------------------------------


def test_bare_key_resolves_the_mapping(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    for web in ("web.1", "web.2"):
        answer = net("GET", url(a, "/params/db_url?wait=0"), token=tok[web])
        assert answer.status == 408
        assert "error" in answer.json
    assert env.store.get_param(a, "web.1:db_url") is None
    put = net("PUT", url(a, pkey("url")), token=tok["db.1"], body={"value": "http://db:5480"})
    assert put.status == 200 and put.json == {"key": "db.1:url"}
    for web in ("web.1", "web.2"):
        for key in ("db_url", f"{web}:db_url"):
            answer = net("GET", url(a, pkey(key)), token=tok[web])
            assert answer.status == 200, answer.raw
            assert answer.json == {"key": "db.1:url", "value": "http://db:5480"}
    # As in SlipStream, the value shows under each mapped input too (in params, run documents).
    assert env.store.get_param(a, "web.1:db_url") == "http://db:5480"
    assert env.store.get_param(a, "web.2:db_url") == "http://db:5480"
    # Run B never saw A's value.
    answer = net("GET", url(runs.b, "/params/db_url?wait=0"), token=runs.tokens[runs.b]["web.1"])
    assert answer.status == 408


def test_long_poll_returns_as_soon_as_the_value_is_put(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    setter = later(
        0.4,
        lambda: net("PUT", url(a, pkey("db.1:url")), token=tok["db.1"], body={"value": "v1"}),
    )
    answer, took = timed(lambda: net("GET", url(a, "/params/db_url?wait=5"), token=tok["web.1"]))
    setter.join(5)
    assert answer.status == 200, answer.raw
    assert answer.json == {"key": "db.1:url", "value": "v1"}
    assert 0.3 < took < PROMPT_S
    # Already set: a long-poll answers at once.
    answer, took = timed(lambda: net("GET", url(a, "/params/db_url?wait=5"), token=tok["web.2"]))
    assert answer.json == {"key": "db.1:url", "value": "v1"}
    assert took < 1.0
    assert env.hub.waits_of(a) == {}


def test_long_poll_names_the_waiter_then_times_out(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    seen: dict[str, list[str]] = {}

    def look() -> None:
        seen.update(env.hub.waits_of(a))

    later(0.3, look)
    answer, took = timed(lambda: net("GET", url(a, "/params/db_url?wait=1"), token=tok["web.2"]))
    assert answer.status == 408
    assert 0.9 < took < 1.0 + PROMPT_S
    assert seen == {"web.2": ["db.1:url"]}
    assert env.hub.waits_of(a) == {}


def test_get_all_waits_for_every_instance(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    path = url(a, "/nodes/web/params/url?wait=0")
    reader = tok["lb.1"]
    assert net("GET", path, token=reader).status == 408
    # web.2 first: order of answers is instance order, not the order of sets.
    assert net("PUT", url(a, pkey("url")), token=tok["web.2"], body={"value": "u2"}).status == 200
    answer = net("GET", path, token=reader)
    assert answer.status == 408
    assert answer.json == {
        "error": "not set",
        "keys": ["web.1:url", "web.2:url"],
        "values": [None, "u2"],
    }
    setter = later(
        0.4, lambda: net("PUT", url(a, pkey("url")), token=tok["web.1"], body={"value": "u1"})
    )
    answer, took = timed(lambda: net("GET", url(a, "/nodes/web/params/url?wait=5"), token=reader))
    setter.join(5)
    assert answer.status == 200, answer.raw
    assert answer.json == {"keys": ["web.1:url", "web.2:url"], "values": ["u1", "u2"]}
    assert 0.3 < took < PROMPT_S
    # Mapped inputs resolve per instance; both web instances map to db.1:url. A wait that
    # ends first says which instances have set it (SlipStream printed those it had).
    answer = net("GET", url(a, "/nodes/web/params/db_url"), token=reader)
    assert answer.status == 408
    assert answer.json["values"] == [None, None]
    env.coordinator.publish(a, {"db.1:url": "http://db"})
    answer = net("GET", url(a, "/nodes/web/params/db_url"), token=reader)
    assert answer.json == {
        "keys": ["web.1:db_url", "web.2:db_url"],
        "values": ["http://db", "http://db"],
    }
    answer = net("GET", url(a, "/nodes/db/params/url"), token=reader)
    assert answer.json == {"keys": ["db.1:url"], "values": ["http://db"]}


@pytest.mark.parametrize(
    ("node", "key", "status"),
    [("nosuch", "url", 404), ("web", "nosuch", 404), ("web", "bad key", 400)],
)
def test_get_all_refused(
    env: Env, runs: Runs, call: Call, node: str, key: str, status: int
) -> None:
    before = snapshot(env, runs)
    path = url(runs.a, f"/nodes/{quote(node, safe='')}/params/{quote(key, safe='')}")
    answer = call("GET", path, token=runs.tokens[runs.a]["lb.1"])
    assert answer.status == status, answer.raw
    assert snapshot(env, runs) == before


# -- state ------------------------------------------------------------------------------


def test_state_long_poll_returns_on_change(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]["web.1"]
    now = net("GET", url(a, "/state"), token=tok)
    assert now.status == 200 and now.json == {"state": "Initializing", "abort": None}
    # Already past `after`: immediate.
    answer, took = timed(lambda: net("GET", url(a, "/state?after=Executing&wait=5"), token=tok))
    assert answer.json == {"state": "Initializing", "abort": None}
    assert took < 1.0

    mover = later(0.4, lambda: env.coordinator.set_state(a, "Provisioning"))
    answer, took = timed(lambda: net("GET", url(a, "/state?after=Initializing&wait=5"), token=tok))
    mover.join(5)
    assert answer.status == 200
    assert answer.json == {"state": "Provisioning", "abort": None}
    assert 0.3 < took < PROMPT_S
    # Run B's state did not move.
    other = net("GET", url(runs.b, "/state"), token=runs.tokens[runs.b]["web.1"])
    assert other.json == {"state": "Initializing", "abort": None}

    # No change within the wait: the current state, after the wait.
    answer, took = timed(
        lambda: net("GET", url(a, "/state?after=Provisioning&wait=0.5"), token=tok)
    )
    assert answer.json == {"state": "Provisioning", "abort": None}
    assert 0.4 < took < 0.5 + PROMPT_S


def test_state_long_poll_returns_on_abort(env: Env, runs: Runs, net: Call) -> None:
    """An abort wakes every waiter of the run (DESIGN §4): a state wait too."""
    a, tok = runs.a, runs.tokens[runs.a]
    later(
        0.3,
        lambda: net("POST", url(a, "/abort"), token=tok["db.1"], body={"message": "boom"}),
    )
    answer, took = timed(
        lambda: net("GET", url(a, "/state?after=Initializing&wait=3"), token=tok["web.1"])
    )
    assert answer.status == 200
    assert answer.json == {"state": "Initializing", "abort": "boom"}
    assert took < PROMPT_S


# -- votes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"state": "Nowhere"},
        {"state": "provisioning"},
        {"state": ""},
        {"state": None},
        {"state": 3},
        {},
        ["Provisioning"],
    ],
)
def test_vote_bad_state_is_400(env: Env, runs: Runs, call: Call, body: Any) -> None:
    before = snapshot(env, runs)
    answer = call("POST", url(runs.a, "/votes"), token=runs.tokens[runs.a]["web.1"], body=body)
    assert answer.status == 400, answer.raw
    assert "error" in answer.json
    assert snapshot(env, runs) == before


def test_vote_is_recorded(env: Env, runs: Runs, call: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    env.coordinator.set_state(a, "Provisioning")
    for name in ("web.1", "db.1"):
        answer = call("POST", url(a, "/votes"), token=tok[name], body={"state": "Provisioning"})
        assert answer.status == 200 and answer.json == {"ok": True}
    # Voting twice is harmless.
    assert (
        call("POST", url(a, "/votes"), token=tok["web.1"], body={"state": "Provisioning"}).status
        == 200
    )
    assert env.store.voters(a, "Provisioning") == {"web.1", "db.1"}
    assert env.store.voters(a, "Executing") == set()
    assert env.store.voters(runs.b, "Provisioning") == set()
    missing = set(INSTANCES) - env.coordinator.voters(a, "Provisioning")
    assert missing == {"lb.1", "web.2"}


# -- reports ----------------------------------------------------------------------------


def test_report_over_the_cap_is_400_and_nothing_written(
    env: Env, runs: Runs, net: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_api, "MAX_REPORT_BYTES", 64)
    a, tok = runs.a, runs.tokens[runs.a]["web.1"]
    reports_dir = env.home / "runs" / a / "reports"
    gz = {"Content-Type": "application/gzip"}
    for chunked in (False, True):
        before = snapshot(env, runs)
        answer = net(
            "POST", url(a, "/reports"), token=tok, headers=gz, data=b"z" * 65, chunked=chunked
        )
        assert answer.status == 400, (chunked, answer.raw)
        assert "error" in answer.json
        assert snapshot(env, runs) == before
        assert env.store.reports(a) == []
        assert not reports_dir.exists() or list(reports_dir.iterdir()) == []

    answer = net("POST", url(a, "/reports"), token=tok, headers=gz, data=b"r" * 64)
    assert answer.status == 200, answer.raw
    assert answer.json == {"ok": True, "size": 64}
    target = reports_dir / "web.1.tar.gz"
    assert target.read_bytes() == b"r" * 64
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [report] = env.store.reports(a)
    assert (report["instance"], report["size"], report["path"]) == ("web.1", 64, str(target))
    assert [e.message for e in env.store.events(a) if e.kind == "report"] == [
        "web.1: report uploaded (64 bytes)"
    ]
    assert env.store.reports(runs.b) == []


# -- secrets ----------------------------------------------------------------------------


def test_store_never_holds_a_raw_token(env: Env, runs: Runs, net: Call) -> None:
    # Some traffic first, so the WAL and the event log have content.
    for run in (runs.a, runs.b):
        env.coordinator.set_state(run, "Executing")
        for token in runs.tokens[run].values():
            assert net("GET", url(run, pkey("id")), token=token).status == 200
            assert (
                net("POST", url(run, "/votes"), token=token, body={"state": "Executing"}).status
                == 200
            )
            assert (
                net("POST", url(run, "/events"), token=token, body={"message": "hi"}).status == 200
            )
            answer = net("GET", url(run, "/recipe"), token=token)
            assert token not in answer.raw.decode("utf-8")
        # A token of another run presented here is refused, and not logged either.
        stranger = runs.tokens[runs.b if run == runs.a else runs.a]["web.1"]
        assert net("GET", url(run, pkey("id")), token=stranger).status == 403
    files = sorted(env.db_file.parent.glob(env.db_file.name + "*"))
    assert env.db_file in files
    blob = b"".join(path.read_bytes() for path in files)
    for run in (runs.a, runs.b):
        for name, token in runs.tokens[run].items():
            assert len(token) >= 32
            assert token.encode() not in blob, f"raw token of {run}/{name} in the database"
            digest = token_hash(token)
            assert [i["token_hash"] for i in env.store.instances(run) if i["name"] == name] == [
                digest
            ]
            assert token not in json.dumps([e.to_json() for e in env.store.events(run)])
            assert token not in json.dumps(env.store.params(run))
            path = token_file(env.home, run, name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = [t for run in runs.tokens.values() for t in run.values()]
    assert len(set(tokens)) == len(tokens)


def test_a_vote_for_a_state_the_run_has_not_reached_is_refused(
    env: Env, runs: Runs, call: Call
) -> None:
    a, tok = runs.a, runs.tokens[runs.a]["web.1"]
    env.coordinator.set_state(a, "Provisioning")
    before = snapshot(env, runs)
    answer = call("POST", url(a, "/votes"), token=tok, body={"state": "Executing"})
    assert answer.status == 400, answer.raw
    assert answer.json == {"error": "cannot vote Executing: the run is in Provisioning"}
    assert snapshot(env, runs) == before
    # The current state, and an earlier one (a replay after a restart), are accepted.
    env.coordinator.set_state(a, "Executing")
    for state in ("Executing", "Provisioning"):
        assert call("POST", url(a, "/votes"), token=tok, body={"state": state}).status == 200


# -- SlipStream's keys and built-ins (issue 10) ---------------------------------------------


def test_node_key_means_its_first_instance_as_slipstream_qualified_it(
    env: Env, runs: Runs, net: Call
) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    env.coordinator.publish(a, {"db.1:url": "http://db", "web.1:url": "http://w1"})
    for caller, key, stored, value in [
        ("web.1", "db:url", "db.1:url", "http://db"),
        ("lb.1", "web:url", "web.1:url", "http://w1"),
        ("lb.1", "web:nodename", "web.1:nodename", "web"),
        ("web.2", "web:multiplicity", "web:multiplicity", "2"),  # node-wide stays node-wide
        ("web.2", "multiplicity", "web:multiplicity", "2"),
        ("web.2", "ids", "web:ids", "1,2"),
        ("lb.1", "web.2:multiplicity", "web.2:multiplicity", "2"),  # and per instance
    ]:
        answer = net("GET", url(a, pkey(key)), token=tok[caller])
        assert answer.status == 200, (key, answer.raw)
        assert answer.json == {"key": stored, "value": value}, key
    # ss-set web:url from web.1 sets web.1:url; from web.2 it is another instance's key.
    answer = net("PUT", url(a, pkey("web:url")), token=tok["web.1"], body={"value": "u"})
    assert (answer.status, answer.json) == (200, {"key": "web.1:url"})
    answer = net("PUT", url(a, pkey("web:url")), token=tok["web.2"], body={"value": "u"})
    assert answer.status == 403


def test_builtins_have_slipstream_names(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    expect = {
        "cloudservice": "local",
        "cloud": "local",
        "node_instance_name": "web.2",
        "nodename": "web",
        "id": "2",
        "multiplicity": "web:multiplicity",  # a bare `multiplicity` is the node's
        "service-offer": "small",
        "image.id": "ubuntu-22.04",  # the native image at the root of its chain
    }
    for name, value in expect.items():
        answer = net("GET", url(a, pkey(f"web.2:{name}")), token=tok["lb.1"])
        assert answer.status == 200, (name, answer.raw)
        wanted = "2" if name == "multiplicity" else value
        assert answer.json == {"key": f"web.2:{name}", "value": wanted}


def test_ignore_abort_reads_and_writes_past_the_fence(env: Env, runs: Runs, net: Call) -> None:
    a, tok = runs.a, runs.tokens[runs.a]
    env.coordinator.publish(a, {"db.1:url": "http://db"})
    assert net("POST", url(a, "/abort"), token=tok["db.1"], body={"message": "x"}).status == 200
    plain = net("GET", url(a, pkey("db_url")), token=tok["web.1"])
    assert plain.status == 409
    past = net("GET", url(a, pkey("db_url") + "?ignore_abort=true"), token=tok["web.1"])
    assert (past.status, past.json) == (200, {"key": "db.1:url", "value": "http://db"})
    answer = net(
        "PUT", url(a, pkey("url") + "?ignore_abort=true"), token=tok["web.1"], body={"value": "c"}
    )
    assert answer.status == 200, answer.raw
    assert env.store.get_param(a, "web.1:url") == "c"
    answer = net("GET", url(a, "/nodes/web/params/url?ignore_abort=true"), token=tok["lb.1"])
    assert answer.status == 408  # web.2 never set it; no 409
    assert answer.json["values"] == ["c", None]
    answer = net("GET", url(a, pkey("url") + "?ignore_abort=yes"), token=tok["web.1"])
    assert answer.status == 400


MAPPINGS_APP = {
    "relay": """\
kind: component
name: relay
image: ubuntu-22.04
inputs:
  upstream: {description: an input of another node}
  password: {sensitive: true, default: ""}
  queue: {optional: true}
outputs:
  ready: {default: "false"}
""",
    "Torque_master": """\
kind: component
name: Torque_master
image: ubuntu-22.04
inputs:
  secret: {default: s3cret, sensitive: true}
  origin: {default: "from the master"}
""",
    "app": """\
kind: deployment
name: app
nodes:
  torque_master:
    component: Torque_master
  procSAR:
    component: relay
    multiplicity: 2
    inputs:
      upstream: {from: torque_master:origin}
      password: {from: torque_master:secret}
  client:
    component: relay
    inputs:
      upstream: {from: procSAR.2:upstream}
      queue: {from: torque_master:hostname}
""",
}


def test_mappings_to_builtins_and_inputs_show_under_each_instance(
    env: Env, tmp_path: Path, net: Call
) -> None:
    from engine.compile.runspec import sensitive_keys
    from engine.runs.manager import masked_params

    for name, text in MAPPINGS_APP.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    dep = RecipeLoader(tmp_path, env.clouds).deployment("app", require_values=True)
    run = env.manager.create(dep, env.clouds, user="alice")
    tok = {
        i["name"]: token_file(env.home, run, i["name"]).read_text("utf-8").strip()
        for i in env.store.instances(run)
    }
    params = env.store.params(run)
    # Input to input (through a chain: client → procSAR.2 → torque_master.1), at creation.
    assert params["procSAR.1:upstream"] == "from the master"
    assert params["procSAR.2:upstream"] == "from the master"
    assert params["client.1:upstream"] == "from the master"
    assert params["procSAR.1:ready"] == "false"  # an output's default
    assert params["procSAR.1:queue"] == ""  # optional, not mapped: empty
    answer = net("GET", url(run, pkey("upstream")), token=tok["client.1"])
    assert answer.json == {"key": "torque_master.1:origin", "value": "from the master"}
    # A built-in: set by the engine once the machine exists, then copied to the input.
    waiting = net("GET", url(run, pkey("queue") + "?wait=0"), token=tok["client.1"])
    assert waiting.status == 408
    env.coordinator.publish(run, {"torque_master.1:hostname": "10.0.0.7"})
    assert env.store.get_param(run, "client.1:queue") == "10.0.0.7"
    answer = net("GET", url(run, pkey("client.1:queue")), token=tok["procSAR.1"])
    assert answer.json == {"key": "torque_master.1:hostname", "value": "10.0.0.7"}
    # A sensitive input's source, and every input fed by it, stay masked.
    secret = sensitive_keys(env.coordinator.spec(run))
    assert {"torque_master.1:secret", "procSAR.1:password", "procSAR.2:password"} <= secret
    shown = masked_params(env.store, run, secret)
    assert shown["procSAR.2:password"] == "***"
    assert shown["torque_master.1:secret"] == "***"
    assert "s3cret" not in json.dumps(shown)
    assert shown["client.1:queue"] == "10.0.0.7"


def test_refresh_never_moves_a_run_back_on_a_stale_read(
    env: Env, runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver's refresh may read the store just before the writer thread commits the
    # state a completed barrier moved to; taking that read would undo the move the agents
    # were already told of (seen as "cannot vote SendingReports: the run is in Executing").
    a = runs.a
    for state in ("Provisioning", "Executing", "SendingReports"):
        assert env.coordinator.set_state(a, state)
    monkeypatch.setattr(env.store, "run_flags", lambda run_id: ("Executing", None))
    assert env.coordinator.refresh(a) == ("SendingReports", None)
    monkeypatch.setattr(env.store, "run_flags", lambda run_id: ("Aborted", "gone"))
    assert env.coordinator.refresh(a) == ("Aborted", "gone")  # forward moves still apply


# -- limits and retired tokens (issue 16) -----------------------------------------------


def test_item_3_one_instance_may_post_only_so_many_events(
    env: Env, runs: Runs, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert coordinator_module.MAX_EVENTS_PER_INSTANCE == 1000
    monkeypatch.setattr(coordinator_module, "MAX_EVENTS_PER_INSTANCE", 5)
    a, tok = runs.a, runs.tokens[runs.a]["web.1"]
    for n in range(5):
        answer = call("POST", url(a, "/events"), token=tok, body={"message": f"line {n}"})
        assert answer.status == 200, answer.raw
    for _ in range(3):
        answer = call("POST", url(a, "/events"), token=tok, body={"message": "flood"})
        assert answer.status == 429
        assert answer.json == {
            "error": "web.1 has posted 5 events, the most one instance may: this one is refused"
        }
    said = [e.message for e in env.store.events(a) if e.kind == "agent"]
    assert said == [*(f"web.1: line {n}" for n in range(5)), NOTE.format(name="web.1")]
    # Another instance has its own allowance; a new server counts what the store holds.
    other = runs.tokens[a]["web.2"]
    assert call("POST", url(a, "/events"), token=other, body={"message": "hi"}).status == 200
    env.coordinator.forget(a)
    assert call("POST", url(a, "/events"), token=tok, body={"message": "again"}).status == 429
    assert [e.message for e in env.store.events(a)].count(NOTE.format(name="web.1")) == 1


NOTE = "{name}: {name} has posted 5 events, the most one instance may; its later events are refused"

OTHER_SERVER = """
import sys
from pathlib import Path
from engine.coordination.coordinator import Coordinator
from engine.coordination.hub import Hub
from engine.store.runstore import RunStore
from webhooks.app import create_app
from webhooks.server import HttpServer
home = Path(sys.argv[1])
hub = Hub()
coordinator = Coordinator(RunStore.open(f"sqlite:///{home}/runs.db"), hub)
server = HttpServer(create_app(home, coordinator), tcp=("127.0.0.1", 0), on_loop=hub.attach)
print(server.start().tcp_url, flush=True)
sys.stdin.read()
"""


def test_item_10_a_retired_token_cannot_write_through_another_servers_cache(
    env: Env, runs: Runs
) -> None:
    """Another server process knows the token (its owner cache keeps it for seconds) when
    this one destroys the run: every write it is then handed is refused, nothing stored."""
    a, tok = runs.a, runs.tokens[runs.a]["web.1"]
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_SERVER, str(env.home)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        base = other.stdout.readline().strip()
        parts = urlsplit(base)

        def there(method: str, path: str, **kw: Any) -> Answer:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
            data = json.dumps(kw["body"]).encode() if "body" in kw else kw.get("data")
            try:
                conn.request(method, path, body=data, headers={"Authorization": f"Bearer {tok}"})
                response = conn.getresponse()
                return Answer(response.status, response.read(), {})
            finally:
                conn.close()

        env.coordinator.set_state(a, "Executing")
        assert there("GET", url(a, pkey("id"))).status == 200  # the owner is cached there
        env.coordinator.set_state(a, "Ready")
        env.coordinator.set_state(a, "Finalizing")
        env.coordinator.retire(a)  # what destroy does, then Done
        env.coordinator.set_state(a, "Done")
        before = snapshot(env, runs)
        writes = [
            ("PUT", url(a, pkey("web.1:url")), {"body": {"value": "http://late"}}),
            ("POST", url(a, "/events"), {"body": {"message": "still here"}}),
            ("POST", url(a, "/votes"), {"body": {"state": "Executing"}}),  # its cache: Executing
            ("POST", url(a, "/abort"), {"body": {"message": "late abort"}}),
            ("POST", url(a, "/reports"), {"data": b"tar"}),
        ]
        for method, path, extra in writes:
            answer = there(method, path, **extra)
            assert answer.status in (401, 409), (path, answer.status, answer.raw)
        assert snapshot(env, runs) == before
    finally:
        other.kill()
        other.wait()


def test_item_13_deeply_nested_json_is_400_not_a_crash(env: Env, runs: Runs, call: Call) -> None:
    before = snapshot(env, runs)
    tok = runs.tokens[runs.a]["web.1"]
    deep = b'{"value": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    for path, data in ((url(runs.a, pkey("url")), deep), (url(runs.a, "/abort"), b"[" * 60_000)):
        method = "PUT" if "/params/" in path else "POST"
        answer = call(method, path, token=tok, data=data)
        assert answer.status == 400, answer.raw
        assert answer.headers.get("content-type") == "application/json"
    assert snapshot(env, runs) == before


@pytest.mark.parametrize("cancel", ["false", "true", 0, 1, None, [], {}])
def test_item_15_cancel_must_be_a_json_boolean(
    env: Env, runs: Runs, call: Call, cancel: Any
) -> None:
    before = snapshot(env, runs)
    body = {"message": "maybe", "cancel": cancel}
    answer = call("POST", url(runs.a, "/abort"), token=runs.tokens[runs.a]["db.1"], body=body)
    assert answer.status == 400, answer.raw
    assert answer.json == {"error": "`cancel` must be true or false"}
    assert snapshot(env, runs) == before


def test_item_2_parallel_reports_are_streamed_to_disk_not_held_in_memory(
    env: Env, runs: Runs
) -> None:
    """20 uploads at once (16 MiB each, sent in 1 MiB chunks that are one shared buffer)
    raise the process's peak memory by far less than what they carry: 320 MiB."""
    chunk, chunks = b"r" * (1 << 20), 16
    tokens = [runs.tokens[run][name] for run in (runs.a, runs.b) for name in INSTANCES]
    tokens += [runs.tokens[runs.a][name] for name in INSTANCES] * 3
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from now
    before = peak_rss_mib()
    answers: list[int] = []

    def upload(token: str) -> None:
        run = runs.a if token in runs.tokens[runs.a].values() else runs.b
        answer = http_call(
            env.server,
            "POST",
            url(run, "/reports"),
            token=token,
            headers={"Content-Type": "application/gzip", "Transfer-Encoding": "chunked"},
            body_iter=(chunk for _ in range(chunks)),
            timeout=120,
        )
        answers.append(answer.status)

    workers = [threading.Thread(target=upload, args=(t,)) for t in tokens[:20]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert answers == [200] * 20
    assert peak_rss_mib() - before < 96
    reports = env.home / "runs" / runs.a / "reports"
    assert (reports / "web.1.tar.gz").stat().st_size == chunks << 20


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")
