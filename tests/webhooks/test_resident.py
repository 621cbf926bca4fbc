"""`slipstream serve` as a resident service: it takes over runs, survives restarts (SIGTERM
and SIGKILL) with no duplicate instance, and its agents outlive a server outage.

Real processes throughout: the server, the Terraform it runs, the agents on `local`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runs.launcher import server_file
from tests.e2e import REPO, agent_pids, cli, marked_processes

CREATE = """
import sys
from pathlib import Path
from engine.service import Service
home, recipe = Path(sys.argv[1]), Path(sys.argv[2])
service = Service(home, None)
run_id = service.deploy(service.local_actor("tester"), recipe, None, recipe.parent)
service.manager().release(run_id)
print(run_id)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Served:
    """A `slipstream serve` subprocess on a free loopback port."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Served:
        env = dict(os.environ, SLIPSTREAM_HOME=str(self.home))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli.app", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.home / "serve.log", "a"),  # noqa: SIM115 - the child owns it
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return self
            except OSError:
                assert self.proc.poll() is None, (self.home / "serve.log").read_text()
                time.sleep(0.1)
        raise AssertionError("serve did not start")

    def stop(self, signum: int = signal.SIGTERM, within: float = 60) -> float:
        """Send ``signum``; returns how long the process took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signum)
        self.proc.wait(timeout=within)
        return time.monotonic() - started


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    yield home
    for run in (home / "runs").glob("*") if (home / "runs").exists() else []:
        for pid in marked_processes(run.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def write_slow_app(root: Path, seconds: int) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / "slow.yaml").write_text(f"""\
kind: component
name: slow
image: ubuntu-22.04
outputs:
  done: {{}}
scripts:
  deployment: |
    ss-display "working"
    sleep {seconds}
    ss-set done "yes from $(ss-get nodename).$(ss-get id)"
""")
    path = root / "slow-app.yaml"
    path.write_text("""\
kind: deployment
name: slow-app
keep_running: always
nodes:
  w: {component: slow, multiplicity: 2}
""")
    return path


def create_run(home: Path, recipe: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CREATE, str(home), str(recipe)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, SLIPSTREAM_HOME=str(home)),
    )
    return done.stdout.strip()


def state_of(home: Path, run_id: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(cli(home, "status", run_id, "--json", check=True).stdout)
    return doc


def wait_state(home: Path, run_id: str, wanted: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        doc = state_of(home, run_id)
        if doc["state"] == wanted:
            return
        assert doc["state"] not in ("Aborted", "Cancelled", "Done"), doc
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not reach {wanted}: {state_of(home, run_id)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_while_executing_still_reaches_ready_with_no_duplicate(
    home: Path, tmp_path: Path, signum: int
) -> None:
    recipe = write_slow_app(tmp_path / "recipes", seconds=6)
    first = Served(home).start()
    run_id = create_run(home, recipe)
    wait_state(home, run_id, "Executing", seconds=90)  # taken over by the sweep, then applied
    took = first.stop(signum)
    assert took < 40, f"serve took {took:.1f}s to stop"
    assert state_of(home, run_id)["state"] == "Executing"  # stopped, not aborted
    before = agent_pids(run_id)
    assert sorted(before) == ["w.1", "w.2"] and all(len(p) == 1 for p in before.values())

    second = Served(home).start()
    try:
        wait_state(home, run_id, "Ready", seconds=120)
        doc = state_of(home, run_id)
        params = doc["params"]
        assert isinstance(params, dict)
        assert params["w.1:done"] == "yes from w.1" and params["w.2:done"] == "yes from w.2"
        assert agent_pids(run_id) == before  # the same agents, none started twice
        server_url = server_file(home / "runs" / run_id).read_text().strip()
        assert server_url.endswith(f"/sockets/{second.proc.pid}.sock")  # type: ignore[union-attr]
    finally:
        second.stop()


def test_agents_of_a_ready_run_survive_a_ten_second_outage(home: Path, tmp_path: Path) -> None:
    recipe = write_slow_app(tmp_path / "recipes", seconds=0)
    first = Served(home).start()
    run_id = create_run(home, recipe)
    wait_state(home, run_id, "Ready", seconds=90)
    before = agent_pids(run_id)
    first.stop(signal.SIGTERM)
    time.sleep(10)
    assert agent_pids(run_id) == before  # still there, retrying
    second = Served(home).start()
    try:
        wrapper = home / "runs" / run_id / "sandboxes" / "w.2" / "work" / "bin" / "ss-get"
        deadline = time.monotonic() + 30
        while True:
            got = subprocess.run(
                [str(wrapper), "--timeout", "5", "w.1:done"], capture_output=True, text=True
            )
            if got.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (got.returncode, got.stdout) == (0, "yes from w.1\n"), got.stderr
        assert agent_pids(run_id) == before
    finally:
        second.stop()
