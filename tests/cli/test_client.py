"""The CLI as a client of a service (``SLIPSTREAM_URL``, ``SLIPSTREAM_TOKEN``).

First against the REST API served in this process over a home made through the store: each
read command prints, byte for byte, what the embedded command prints on the same home, and
exits the same. Then end to end: a real ``slipstream serve`` over HTTPS, a client
``deploy --wait`` of ``webapp`` that reaches Ready, a run that outlives the client (its
tiers answer, its agents are still served), and a client ``destroy`` that ends it with no
process left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from engine.cli.app import app
from engine.runs.launcher import token_file
from engine.service import Service
from engine.store.runstore import NewInstance, NewRun
from tests.e2e import REPO, cli, fetch, marked_processes
from tests.served import Served, serve
from webhooks.app import create_app
from webhooks.server import HttpServer

SPEC = {
    "nodes": {
        "web": {"inputs": {}, "sensitive": [], "multiplicity": 1},
        "db": {"inputs": {}, "sensitive": ["password"], "multiplicity": 1},
    }
}


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A home with run ``r1`` (Ready, a secret) and ``r2`` (aborted), served in this
    process; yields the home and the environment of a client with an admin's token."""
    home = tmp_path / "home"
    service = Service(home, None)
    store = service.store
    store.create_run(
        NewRun("r1", "webapp", "alice", "always", 60, json.dumps(SPEC)),
        [
            NewInstance("web.1", "web", 1, "local", "h1"),
            NewInstance("db.1", "db", 1, "local", "h2"),
        ],
        {"ss:url.service": "http://127.0.0.1:9/", "db.1:password": "hunter2"},
    )
    store.set_params("r1", {"web.1:statecustom": "serving"})
    store.add_event("r1", "state", "Initializing → Ready", {"to": "Ready"})
    store.set_state("r1", "Ready")
    time.sleep(0.01)
    store.create_run(NewRun("r2", "cluster", "bob", "never", 60, json.dumps(SPEC)), [], {})
    store.set_abort("r2", "db.1: install failed")
    store.set_state("r2", "Aborted")
    service.access.add_user(service.local_actor(), "root", admin=True)
    _, token = service.access.create_token(service.local_actor(), "root")
    server = HttpServer(
        create_app(home, service.coordinator, service),
        tcp=("127.0.0.1", 0),
        on_loop=service.hub.attach,
    ).start()
    env = {
        "SLIPSTREAM_URL": server.tcp_url,
        "SLIPSTREAM_TOKEN": token,
        "SLIPSTREAM_HOME": str(tmp_path / "client-home"),
    }
    try:
        yield home, env
    finally:
        server.stop()
        service.store.close()


def embedded(home: Path, *args: str) -> Result:
    env = {"SLIPSTREAM_HOME": str(home), "SLIPSTREAM_URL": None, "SLIPSTREAM_TOKEN": None}
    return CliRunner().invoke(app, list(args), env=env)  # type: ignore[arg-type]


def as_client(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "r1"],
        ["status", "r1", "--json"],
        ["status", "r2"],
        ["list"],
        ["list", "--json"],
        ["params", "r1"],
        ["params", "r1", "--json"],
        ["logs", "r1"],
        ["logs", "r1", "--json"],
        ["logs", "r2", "--follow"],
        ["status", "nope"],
        ["params", "nope"],
        ["logs", "nope"],
        ["resume", "nope"],
        ["destroy", "nope"],
    ],
)
def test_a_client_prints_what_the_embedded_command_prints(
    in_process: tuple[Path, dict[str, str]], args: list[str]
) -> None:
    home, env = in_process
    local, remote = embedded(home, *args), as_client(env, *args)
    assert (remote.exit_code, remote.stdout, remote.stderr) == (
        local.exit_code,
        local.stdout,
        local.stderr,
    )
    assert "hunter2" not in remote.stdout
    assert not Path(env["SLIPSTREAM_HOME"]).exists()  # a client keeps no home


def test_half_a_client_setting_is_a_usage_error(in_process: tuple[Path, dict[str, str]]) -> None:
    _, env = in_process
    result = as_client({**env, "SLIPSTREAM_TOKEN": ""}, "list")
    assert (result.exit_code, result.stderr) == (
        2,
        "list: SLIPSTREAM_URL is set but SLIPSTREAM_TOKEN is not\n",
    )
    unreachable = as_client({**env, "SLIPSTREAM_URL": "http://127.0.0.1:9"}, "list")
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith("list: cannot reach http://127.0.0.1:9: ")


def test_a_client_list_imports_no_store_recipes_or_server(
    in_process: tuple[Path, dict[str, str]],
) -> None:
    _, env = in_process
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "engine.cli.app", "list"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()[1:]
        if line.startswith("import time:")
    }
    assert "engine.cli.client" in modules
    heavy = ("engine.store", "engine.service", "engine.recipes", "sqlite3", "yaml", "webhooks")
    assert sorted(m for m in modules if m.split(".")[0] in heavy or m.startswith(heavy)) == []


# -- end to end -------------------------------------------------------------------------


def agent_call(
    served: Served, run_id: str, instance: str, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str]]:
    """An agent API call with ``instance``'s own token, as its ``ss-*`` commands make."""
    token = token_file(served.home, run_id, instance).read_text().strip()
    conn = served.connection()
    try:
        conn.request(
            method,
            f"/agent/v1/runs/{run_id}{path}",
            body,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def wait_gone(run_id: str, seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_client_deploy_outlives_the_client_and_a_client_destroy_ends_it(
    tmp_path: Path,
) -> None:
    served = serve(tmp_path / "home", tls=True)
    try:
        alice = served.user("alice")
        done = served.client(
            alice, "deploy", "webapp", "--input", "greeting=Bonjour", "--wait", "--json"
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        run_id = doc["id"]
        assert (doc["state"], doc["user"], doc["abort"]) == ("Ready", "alice", None)
        assert set(doc) == {"id", "deployment", "user", "state", "abort", "params", "url"} | {
            "events",
            "approval",
        }
        assert doc["params"]["lb.1:url"] == doc["url"]
        assert done.stderr == f"run {run_id}: deploying `webapp`\n"  # as embedded, --json
        assert not (tmp_path / "client-home").exists()
        over_http = served.call("GET", f"/api/v1/runs/{run_id}?events=0", alice).json
        assert (over_http["state"], over_http["url"], over_http["events"]) == (
            "Ready",
            doc["url"],
            [],
        )
        assert over_http["events_before"] >= len(doc["events"])
        # what the client prints is what the service's host reads in its own home
        status = served.client(alice, "status", run_id, "--json")
        assert status.stdout == cli(served.home, "status", run_id, "--json", check=True).stdout

        time.sleep(3)  # the client is gone; the run is the service's
        body, served_by = fetch(doc["url"] + "/")
        assert "Bonjour! hello from the database (served by web." in body
        assert served_by in body
        waiting: list[tuple[int, dict[str, str]]] = []
        poll = threading.Thread(
            target=lambda: waiting.append(
                agent_call(served, run_id, "db.1", "GET", "/params/web.1:url.probe?wait=20")
            )
        )
        poll.start()
        time.sleep(0.5)
        stored = agent_call(served, run_id, "web.1", "PUT", "/params/url.probe", b'{"value": "x"}')
        poll.join(timeout=30)
        assert stored == (200, {"key": "web.1:url.probe"})
        assert waiting == [(200, {"key": "web.1:url.probe", "value": "x"})]
        shown = served.client(alice, "params", run_id, "--json")
        assert json.loads(shown.stdout)["web.1:url.probe"] == "x"

        resumed = served.client(alice, "resume", run_id, "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["state"] == "Ready"  # nothing to redo

        follower = subprocess.Popen(
            [sys.executable, "-m", "engine.cli.app", "logs", run_id, "--follow"],
            cwd=REPO,
            env=served.client_env(alice, tmp_path / "client-home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        destroyed = served.client(alice, "destroy", run_id, "--json")
        assert destroyed.returncode == 0, destroyed.stderr
        assert json.loads(destroyed.stdout) == {"id": run_id, "state": "Done", "destroyed": True}
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert out.splitlines()[-1].endswith("run entered Done")
        assert "run entered Ready" in out
        assert wait_gone(run_id) == []
        assert not (served.home / "runs" / run_id / "sandboxes").exists()
    finally:
        served.stop()
    assert served.proc.returncode == 0


def test_a_client_deploy_of_a_broken_recipe_prints_every_problem(tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    (root / "lib").mkdir(parents=True)
    (root / "slipstream.yaml").write_text("deployments: []\n")
    (root / "lib" / "box.yaml").write_text("kind: component\nname: box\nimage: ubuntu-22.04\n")
    (root / "shop.yaml").write_text(
        "kind: deployment\nname: shop\nnodes:\n  one: {component: box, colour: red}\n"
    )
    (root / "notes.yml").write_text("just: notes\n")  # no recipe kind: never sent
    served = serve(tmp_path / "home", tls=False)
    try:
        alice = served.user("alice")
        local = cli(tmp_path / "local-home", "deploy", "shop.yaml", cwd=root)
        remote = served.client(alice, "deploy", "shop.yaml", cwd=root)
        assert remote.returncode == local.returncode == 1
        assert remote.stdout == local.stdout
        assert remote.stdout.startswith("shop.yaml:4:")
        assert remote.stderr == "deploy: 1 problem(s)\n"
        assert served.client(alice, "list").stdout == ""
        bad = served.client(alice, "deploy", "shop.yaml", "--clouds", "c.yaml", cwd=root)
        assert (bad.returncode, bad.stderr) == (
            2,
            "usage: --clouds is the service's setting, not its clients'\n",
        )
    finally:
        served.stop()


def test_a_client_trusts_only_the_certificate_it_is_given(tmp_path: Path) -> None:
    served = serve(tmp_path / "home", tls=True)
    try:
        alice = served.user("alice")
        env = served.client_env(alice, tmp_path / "client-home")
        trusting = subprocess.run(
            [sys.executable, "-m", "engine.cli.app", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (trusting.returncode, trusting.stderr) == (0, "")
        env.pop("SLIPSTREAM_CA_FILE")
        wary = subprocess.run(
            [sys.executable, "-m", "engine.cli.app", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert wary.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in wary.stderr
    finally:
        served.stop()
