"""The read commands (status, list, params, logs) on a service home made through the store:
their text, their --json documents, and exit 1 for an unknown run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from engine.cli.app import app
from engine.cli.progress import render
from engine.service import Service
from engine.store.runstore import NewInstance, NewRun

SPEC = {
    "nodes": {
        "web": {"inputs": {}, "sensitive": [], "multiplicity": 1},
        "db": {"inputs": {}, "sensitive": ["password"], "multiplicity": 1},
    }
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with run ``r1`` (Ready, two instances, a secret) and run ``r2`` (aborted)."""
    home = tmp_path / "home"
    store = Service(home, None).store
    store.create_run(
        NewRun("r1", "webapp", "alice", "always", 60, json.dumps(SPEC)),
        [
            NewInstance("web.1", "web", 1, "local", "h1"),
            NewInstance("db.1", "db", 1, "local", "h2"),
        ],
        {"ss:url.service": "http://127.0.0.1:9/", "db.1:password": "hunter2"},
    )
    store.set_params("r1", {"web.1:statecustom": "serving", "db.1:hostname": "db"})
    store.add_event("r1", "state", "Initializing → Ready", {"to": "Ready"})
    store.set_state("r1", "Ready")
    time.sleep(0.01)  # r2 is newer
    store.create_run(NewRun("r2", "cluster", "bob", "never", 60, json.dumps(SPEC)), [], {})
    store.set_abort("r2", "db.1: install failed")
    return home


def run(home: Path, *args: str) -> Result:
    env = {"SLIPSTREAM_HOME": str(home), "SLIPSTREAM_USER": "tester"}
    return CliRunner().invoke(app, list(args), env=env)


def test_list_newest_first(home: Path) -> None:
    result = run(home, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["r2", "r1"]
    assert lines[1].endswith("  webapp           Ready")
    listed = json.loads(run(home, "list", "--json").stdout)
    assert [(r["id"], r["deployment"], r["user"]) for r in listed] == [
        ("r2", "cluster", "bob"),
        ("r1", "webapp", "alice"),
    ]
    assert set(listed[0]) == {"id", "deployment", "state", "user", "created_at"}


def test_status_text_and_json(home: Path) -> None:
    result = run(home, "status", "r1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "r1  webapp  Ready  http://127.0.0.1:9/\n  web.1: serving\n"
    doc = json.loads(run(home, "status", "r1", "--json").stdout)
    assert "events" not in doc
    assert doc["params"]["db.1:password"] == "***"
    assert (doc["state"], doc["url"], doc["abort"]) == ("Ready", "http://127.0.0.1:9/", None)
    aborted = run(home, "status", "r2")
    assert "abort: db.1: install failed\n" in aborted.stdout


def test_params_are_masked(home: Path) -> None:
    result = run(home, "params", "r1")
    assert result.exit_code == 0, result.output
    assert "db.1:password = ***\n" in result.stdout
    assert "hunter2" not in result.stdout
    assert json.loads(run(home, "params", "r1", "--json").stdout)["web.1:statecustom"] == "serving"


def test_logs_text_and_json_lines(home: Path) -> None:
    result = run(home, "logs", "r1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith(" state     Initializing → Ready")
    first = json.loads(run(home, "logs", "r1", "--json").stdout.splitlines()[0])
    assert (first["kind"], first["data"]) == ("state", {"to": "Ready"})


@pytest.mark.parametrize("command", ["status", "params", "logs", "resume", "destroy"])
def test_unknown_run_is_exit_1(home: Path, command: str) -> None:
    result = run(home, command, "nope")
    assert result.exit_code == 1
    assert result.stderr == f"{command}: unknown run `nope`\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("command", "code", "stdout"),
    [(["list"], 0, ""), (["list", "--json"], 0, "[]\n"), (["status", "r1"], 1, "")],
)
def test_reading_where_nothing_was_deployed_creates_nothing(
    tmp_path: Path, command: list[str], code: int, stdout: str
) -> None:
    home = tmp_path / "nowhere"
    result = run(home, *command)
    assert (result.exit_code, result.stdout) == (code, stdout)
    assert not home.exists()


def many_events(home: Path, count: int) -> None:
    store = Service(home, None).store

    def write(conn: Any) -> None:
        conn.executemany(
            "INSERT INTO events (run_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            [("r1", time.time(), "agent", f"web.1: line {n}", "{}") for n in range(count)],
        )

    store.write(write)
    store.add_event("r1", "state", "run entered Done", {"state": "Done"})


def test_item_3_logs_pages_through_every_event(home: Path) -> None:
    many_events(home, 2500)
    lines = run(home, "logs", "r1").stdout.splitlines()
    assert len(lines) == 2502
    assert lines[-1].endswith(" state     run entered Done")
    docs = run(home, "logs", "r1", "--json").stdout.splitlines()
    assert len(docs) == 2502 and json.loads(docs[-1])["message"] == "run entered Done"


def test_item_3_the_run_document_ends_with_the_last_event(home: Path) -> None:
    """What `deploy --json` prints: the last events, and how many came before them."""
    many_events(home, 2500)
    service = Service(home, None)
    doc = service.get_run(service.local_actor("tester"), "r1")
    assert len(doc["events"]) == 1000 and doc["earlier_events"] == 1502
    assert doc["events"][-1]["message"] == "run entered Done"


FORGED = "ok\n12:00:00 state     run entered Ready\x1b]0;pwned\x07\u202edesrever\x9b2J"


def test_item_12_what_agents_sent_is_printed_escaped(home: Path) -> None:
    store = Service(home, None).store
    store.add_event("r1", "agent", f"web.1: {FORGED}", {"instance": "web.1"})
    store.set_params("r1", {"web.1:statecustom": FORGED, "web.1:url": FORGED})
    store.set_abort("r1", FORGED)
    escaped = "ok\\n12:00:00 state     run entered Ready\\x1b]0;pwned\\x07\\u202edesrever\\x9b2J"
    outputs = {
        "logs": run(home, "logs", "r1").stdout,
        "status": run(home, "status", "r1").stdout,
        "params": run(home, "params", "r1").stdout,
        "status --json": run(home, "status", "r1", "--json").stdout,
    }
    for name, out in outputs.items():
        assert not any(c in out for c in "\x1b\x07\x9b\u202e"), name
        assert "\n12:00:00 state" not in out, name  # no forged line
    assert f"web.1: {escaped}" in outputs["logs"]
    assert f"  web.1: {escaped}\n" in outputs["status"]
    assert f"abort: {escaped}\n" in outputs["status"]
    assert f"web.1:url = {escaped}\n" in outputs["params"]
    assert json.loads(outputs["status --json"])["abort"] == FORGED  # JSON keeps the text

    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(render(store, "r1"))
    table = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in table and "\\x1b]0;pwned" in table


HOLD = """
import sys, time
from pathlib import Path
from engine.runs.locks import RunLock
with RunLock(Path(sys.argv[1]), "deploy"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_item_15_resume_of_a_run_being_driven_prints_no_history(home: Path) -> None:
    # The driver is another process (the lock is re-entrant within one).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / "runs" / "r1" / "driver.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run(home, "resume", "r1")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert result.stderr == f"run r1: run is locked by deploy (pid {holder.pid})\n"
