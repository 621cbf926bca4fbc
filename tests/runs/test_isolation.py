"""The `local` cloud isolates what it can (issue 16 item 11, issue 10 item 7, and issue 16
item 15's interrupted start): real CLI, real Terraform, real processes, real bwrap.

Everything an instance could reach lives outside ``/tmp`` (see ``tests.e2e.outside_tmp``):
instances have a private ``/tmp``, so checks there would pass for the wrong reason. The
fallback test runs the same probes without bwrap and finds them succeeding, which shows
the isolated test's "denied" comes from the isolation, not from a wrong path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runs import isolation
from tests.e2e import REPO, cli, deploy_json, marked_processes

ATTACKER = """\
kind: component
name: attacker
image: ubuntu-22.04
inputs:
  svc: {}
  victim: {}
  userhome: {}
  outside: {}
  nonce: {}
outputs:
  other_run_token: {}
  peer_token: {}
  other_sandbox: {}
  runs_db: {}
  credentials: {}
  write_home: {}
  write_outside: {}
  write_tmp: {}
  home: {}
  tmpdir: {}
  daemon: {}
scripts:
  deployment: |
    attempt() { if "$@" >/dev/null 2>&1; then echo got; else echo denied; fi; }
    svc="$(ss-get svc)"; victim="$(ss-get victim)"; nonce="$(ss-get nonce)"
    ss-set other_run_token "$(attempt cat "$svc/runs/$victim/tokens/victim.1")"
    ss-set peer_token "$(attempt cat "$svc/runs/$SLIPSTREAM_RUN_ID/tokens/peer.1")"
    ss-set other_sandbox "$(attempt ls "$svc/runs/$victim/sandboxes/victim.1/work")"
    ss-set runs_db "$(attempt cat "$svc/runs.db")"
    ss-set credentials "$(attempt cat "$(ss-get userhome)/.aws/credentials")"
    ss-set write_home "$(attempt touch "$svc/planted")"
    ss-set write_outside "$(attempt touch "$(ss-get outside)/planted")"
    ss-set write_tmp "$(attempt touch "/tmp/planted-$nonce")"
    ss-set home "$HOME"
    ss-set tmpdir "$TMPDIR"
    setsid env -i /bin/sleep "$nonce" </dev/null >/dev/null 2>&1 &
    ss-set daemon started
"""
IDLE = """\
kind: component
name: idle
image: ubuntu-22.04
scripts:
  deployment: "true"
"""
ATTACK_APP = """\
kind: deployment
name: attack-app
keep_running: always
inputs:
  svc: {default: ""}
  victim: {default: none}
  userhome: {default: ""}
  outside: {default: ""}
  nonce: {default: "0"}
nodes:
  peer: {component: idle}
  attacker:
    component: attacker
    inputs:
      svc: {from: input:svc}
      victim: {from: input:victim}
      userhome: {from: input:userhome}
      outside: {from: input:outside}
      nonce: {from: input:nonce}
"""
VICTIM_APP = """\
kind: deployment
name: victim-app
keep_running: always
nodes:
  victim: {component: idle}
"""
TWIN = """\
kind: component
name: twin
image: ubuntu-22.04
outputs:
  ready: {}
  home: {}
  tmpdir: {}
  seen: {}
scripts:
  deployment: |
    echo "$SLIPSTREAM_INSTANCE" > "$HOME/me"
    echo "$SLIPSTREAM_INSTANCE" > "$TMPDIR/me"
    ss-set ready yes
    ss-get-all twin ready > /dev/null
    ss-set home "$HOME"
    ss-set tmpdir "$TMPDIR"
    ss-set seen "$(cat "$HOME/me") $(cat "$TMPDIR/me")"
"""
TWIN_APP = """\
kind: deployment
name: twin-app
keep_running: always
nodes:
  twin: {component: twin, multiplicity: 2}
"""


@pytest.fixture(scope="module", autouse=True)
def bwrap_installed() -> None:
    # No skip: without bwrap these tests must fail, and `make test` installs it.
    assert shutil.which("bwrap"), "bwrap is needed: apt-get install bubblewrap"


@pytest.fixture
def recipes(outside: Path) -> Path:
    root = outside / "recipes"
    (root / ".git").mkdir(parents=True)
    for name, text in {
        "attacker": ATTACKER,
        "idle": IDLE,
        "attack-app": ATTACK_APP,
        "victim-app": VICTIM_APP,
        "twin": TWIN,
        "twin-app": TWIN_APP,
    }.items():
        (root / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def user_home(outside: Path) -> Path:
    """The service user's home, holding cloud credentials as the AWS CLI keeps them."""
    home = outside / "user"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = s3cr3t\n")
    return home


@pytest.fixture
def nonce() -> Iterator[str]:
    """A number unique to the test: the attacker's daemon runs ``sleep NONCE``."""
    value = str(random.randrange(500_000, 900_000))
    yield value
    for pid in daemons(value):  # whatever a failed test left
        os.kill(pid, signal.SIGKILL)


def daemons(nonce: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if argv[-2:] == [nonce.encode(), b""] and argv[0].endswith(b"sleep") and state != "Z":
            found.append(int(entry.name))
    return found


def attack(
    home: Path,
    recipes: Path,
    user_home: Path,
    outside: Path,
    nonce: str,
    victim: str,
    env: dict[str, str],
) -> dict[str, Any]:
    code, doc = deploy_json(
        home,
        str(recipes / "attack-app.yaml"),
        "--input",
        f"svc={home}",
        "--input",
        f"victim={victim}",
        "--input",
        f"userhome={user_home}",
        "--input",
        f"outside={outside}",
        "--input",
        f"nonce={nonce}",
        env=env,
    )
    assert code == 0, doc
    return doc


def test_item_11_a_script_reaches_nothing_of_the_service_and_nothing_of_it_outlives_destroy(
    outside: Path, recipes: Path, user_home: Path, nonce: str
) -> None:
    home = outside / "home"
    env = {"HOME": str(user_home)}
    code, victim = deploy_json(home, str(recipes / "victim-app.yaml"), env=env)
    assert code == 0, victim
    doc: dict[str, Any] = {"id": None}
    try:
        doc = attack(home, recipes, user_home, outside, nonce, str(victim["id"]), env)
        params = doc["params"]
        tried = {
            key: params[f"attacker.1:{key}"]
            for key in (
                "other_run_token",
                "peer_token",
                "other_sandbox",
                "runs_db",
                "credentials",
                "write_home",
                "write_outside",
            )
        }
        assert tried == dict.fromkeys(tried, "denied")
        # /tmp is private: writable, and nothing of it reaches the host's
        assert params["attacker.1:write_tmp"] == "got"
        assert not Path(f"/tmp/planted-{nonce}").exists()
        assert not (home / "planted").exists() and not (outside / "planted").exists()
        sandbox = home.resolve() / "runs" / str(doc["id"]) / "sandboxes" / "attacker.1"
        assert params["attacker.1:home"] == str(sandbox / "home")
        assert params["attacker.1:tmpdir"] == str(sandbox / "tmp")
        assert not (sandbox / "agent.env").exists()  # the token reached the agent by a pipe
        # the daemon runs, in a new session with an empty environment: no marker to find
        assert params["attacker.1:daemon"] == "started"
        running = daemons(nonce)
        assert running
        assert Path(f"/proc/{running[0]}/environ").read_bytes() == b""
    finally:
        for run_id in (doc["id"], victim["id"]):
            if run_id:
                done = cli(home, "destroy", str(run_id), "--json", env=env)
                assert json.loads(done.stdout)["state"] == "Done", done.stderr
    assert daemons(nonce) == []
    assert marked_processes(str(doc["id"])) == marked_processes(str(victim["id"])) == []
    assert not (home / "runs" / str(doc["id"]) / "sandboxes").exists()


def test_item_11_two_instances_of_one_node_have_their_own_home_and_tmpdir(
    outside: Path, recipes: Path
) -> None:
    """Also issue 10 item 7: files one instance writes to $HOME or $TMPDIR are its own."""
    home = outside / "home"
    code, doc = deploy_json(home, str(recipes / "twin-app.yaml"))
    try:
        assert code == 0, doc
        params = doc["params"]
        sandboxes = home.resolve() / "runs" / doc["id"] / "sandboxes"
        for i in (1, 2):
            assert params[f"twin.{i}:home"] == str(sandboxes / f"twin.{i}" / "home")
            assert params[f"twin.{i}:tmpdir"] == str(sandboxes / f"twin.{i}" / "tmp")
            assert params[f"twin.{i}:seen"] == f"twin.{i} twin.{i}"
    finally:
        cli(home, "destroy", doc["id"])
    assert marked_processes(doc["id"]) == []


def test_item_11_without_bwrap_runs_as_before_with_one_warning(
    outside: Path, recipes: Path, user_home: Path, nonce: str
) -> None:
    home = outside / "home"
    env = {"HOME": str(user_home), isolation.BWRAP_ENV: str(outside / "no-bwrap-here")}
    doc = attack(home, recipes, user_home, outside, nonce, "none", env)
    try:
        assert doc["state"] == "Ready"
        warnings = [e["message"] for e in doc["events"] if e["kind"] == "warning"]
        assert len(warnings) == 1
        assert warnings[0].startswith("local instances run without isolation: cannot run bwrap")
        assert "runs.db" in warnings[0] and "outlives destroy" in warnings[0]
        params = doc["params"]
        # what the warning says: the same probes now reach the service's files
        assert params["attacker.1:peer_token"] == "got"
        assert params["attacker.1:runs_db"] == "got"
        assert params["attacker.1:credentials"] == "got"
        # ... while each instance still has its own HOME and TMPDIR
        sandbox = home.resolve() / "runs" / str(doc["id"]) / "sandboxes" / "attacker.1"
        assert params["attacker.1:home"] == str(sandbox / "home")
        assert params["attacker.1:tmpdir"] == str(sandbox / "tmp")
    finally:
        cli(home, "destroy", str(doc["id"]), env=env)
    assert marked_processes(str(doc["id"])) == []


FAKE_BWRAP = """\
#!/bin/sh
# Run by the launcher: kill it mid-start, and linger as a half-made instance would.
if tr '\\0' ' ' < /proc/$PPID/cmdline | grep -q engine.runs.launcher; then
  kill -9 $PPID
  exec sleep 300
fi
exec bwrap "$@"
"""


def fake_bwrap(folder: Path) -> Path:
    path = folder / "bwrap-killing-its-launcher"
    path.write_text(FAKE_BWRAP)
    path.chmod(0o755)
    return path


def test_item_11_an_interrupted_start_leaves_no_sandbox_and_no_process_after_destroy(
    outside: Path, recipes: Path
) -> None:
    """Issue 16 item 15: the launcher killed between making the sandbox and starting the
    agent. Terraform taints the instance and never runs its stop; destroy still clears it."""
    home = outside / "home"
    env = {isolation.BWRAP_ENV: str(fake_bwrap(outside))}
    code, doc = deploy_json(home, str(recipes / "victim-app.yaml"), env=env)
    run_id = doc["id"]
    assert code == 1
    assert doc["state"] == "Aborted"
    assert 'terraform_data.victim["1"]' in doc["abort"] and "signal: killed" in doc["abort"]
    assert (home / "runs" / run_id / "sandboxes" / "victim.1").is_dir()
    assert marked_processes(run_id)  # the half-made instance lingers
    cli(home, "destroy", run_id, check=True)
    logs = cli(home, "logs", run_id, check=True).stdout
    assert (
        "local: stopped victim.1, which Terraform no longer tracked (an interrupted start)" in logs
    )
    assert marked_processes(run_id) == []
    assert not (home / "runs" / run_id / "sandboxes").exists()
    assert not (home / "runs" / run_id / "tokens").exists()


def launcher(home: Path, run_id: str, action: str, sandbox: Path, env: dict[str, str]) -> int:
    full = dict(
        os.environ,
        SLIPSTREAM_RUN_ID=run_id,
        SLIPSTREAM_INSTANCE="n.1",
        SLIPSTREAM_SANDBOX=str(sandbox),
        PYTHONPATH=str(REPO),
        **env,
    )
    argv = [sys.executable, "-m", "engine.runs.launcher", "--home", str(home), action]
    return subprocess.run(argv, env=full, cwd=REPO, timeout=60, check=False).returncode


def namespace_processes(init: int) -> list[int]:
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_item_11_start_after_an_interrupted_start_begins_afresh_and_stop_leaves_nothing(
    outside: Path, nonce: str
) -> None:
    home, run_id = outside / "home", f"launcher-test-{nonce}"
    run_dir = home / "runs" / run_id
    (run_dir / "tokens").mkdir(parents=True)
    (run_dir / "tokens" / "n.1").write_text("token-of-n1\n")
    listener = socket.socket()  # a server that never answers: the agent waits, up
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = run_dir / "server" / "server.url"
    url.parent.mkdir(parents=True)
    url.write_text(f"http://127.0.0.1:{listener.getsockname()[1]}\n")
    sandbox = run_dir / "sandboxes" / "n.1"
    try:
        code = launcher(
            home, run_id, "start", sandbox, {isolation.BWRAP_ENV: str(fake_bwrap(outside))}
        )
        assert code == -signal.SIGKILL
        assert sandbox.is_dir() and not (sandbox / "launcher.json").exists()
        assert marked_processes(run_id)  # the half-made instance lingers
        assert launcher(home, run_id, "start", sandbox, {}) == 0
        record = json.loads((sandbox / "launcher.json").read_text())
        assert record["isolated"] is True
        deadline = time.monotonic() + 30
        while not (sandbox / "work" / "agent.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # one instance: its namespace's PID 1, the agent; the lingering one is gone
        assert len(namespace_processes(record["pid"])) == 2
        assert sorted(marked_processes(run_id)) == sorted(
            [*namespace_processes(record["pid"]), outer_bwrap(record["pid"])]
        )
        assert launcher(home, run_id, "start", sandbox, {}) == 0  # running: left alone
        assert json.loads((sandbox / "launcher.json").read_text()) == record
        assert launcher(home, run_id, "stop", sandbox, {}) == 0
        assert marked_processes(run_id) == []
        assert not sandbox.exists()
    finally:
        listener.close()
        launcher(home, run_id, "stop", sandbox, {})


def outer_bwrap(init: int) -> int:
    return int(Path(f"/proc/{init}/stat").read_text().rpartition(")")[2].split()[1])


def test_item_11_mounts_rebuild_the_folders_above_what_is_hidden_or_bound() -> None:
    """The folders above the service home are made anew (so they belong to the service
    user in a user namespace) with their other entries bound read-only; a folder inside
    /tmp or a hidden one is not listed at all."""
    listed = {
        Path("/"): [Path("/srv"), Path("/usr"), Path("/tmp"), Path("/proc"), Path("/dev")],
        Path("/srv"): [Path("/srv/ss"), Path("/srv/other")],
    }
    spec = isolation.Spec(
        sandbox=Path("/srv/ss/runs/r1/sandboxes/web.1"),
        hidden=(Path("/srv/ss"), Path("/tmp/user-home"), Path("/")),
        readable=(Path("/srv/ss/sockets"), Path("/usr/lib/python3"), Path("/srv/ss/sockets/a")),
    )
    ops = spec.mounts(lambda folder: listed.get(folder, []))
    triples = []
    i = 0
    while i < len(ops):
        width = 2 if ops[i] in ("--dir", "--proc", "--dev", "--remount-ro") else 3
        triples.append(tuple(ops[i : i + width]))
        i += width
    assert triples == [
        ("--dev", "/dev"),
        ("--proc", "/proc"),
        ("--dir", "/srv"),
        ("--ro-bind-try", "/srv/other", "/srv/other"),
        ("--dir", "/srv/ss"),
        ("--bind", "/srv/ss/runs/r1/sandboxes/web.1", "/srv/ss/runs/r1/sandboxes/web.1"),
        ("--ro-bind", "/srv/ss/sockets", "/srv/ss/sockets"),
        ("--bind", "/srv/ss/runs/r1/sandboxes/web.1/tmp", "/tmp"),
        ("--ro-bind-try", "/usr", "/usr"),
        ("--remount-ro", "/"),
    ]
