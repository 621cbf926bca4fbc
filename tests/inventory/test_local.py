"""Inventory and drift on `local`: real runs, real agents, a real kill."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from engine.service import Service
from tests.e2e import agent_pids, cli, deploy_json

RECIPES = {
    "idle.yaml": "kind: component\nname: idle\nimage: debian-12\n"
    "scripts:\n  deployment: ss-display up\n",
    "pair.yaml": "kind: deployment\nname: pair\nkeep_running: always\n"
    "nodes:\n  w: {component: idle, multiplicity: 2}\n",
}


def inventory(home: Path) -> dict[str, object]:
    done = cli(home, "inventory", "--cloud", "local", "--json", check=True)
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def findings(home: Path) -> list[tuple[str, str, str]]:
    doc = inventory(home)
    clouds = doc["clouds"]
    assert isinstance(clouds, list)
    return [(f["kind"], f["run_id"], f["instance"]) for f in clouds[0]["findings"]]


def test_killing_an_instance_process_shows_as_drift(tmp_path: Path) -> None:
    home, recipes = tmp_path / "home", tmp_path / "recipes"
    (recipes / ".git").mkdir(parents=True)
    for name, text in RECIPES.items():
        (recipes / name).write_text(text)
    code, doc = deploy_json(home, str(recipes / "pair.yaml"))
    assert (code, doc["state"]) == (0, "Ready"), doc
    run_id = str(doc["id"])
    try:
        assert findings(home) == []
        [victim] = agent_pids(run_id)["w.2"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "w.2" in agent_pids(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)

        assert findings(home) == [("drift", run_id, "w.2")]
        text = cli(home, "inventory", "--cloud", "local", check=True).stdout
        assert (
            f"  drift   local  run {run_id} w.2: its process died: the run's state has it, "
            "this host no longer runs it"
        ) in text.splitlines()

        service = Service(home, None)
        found = service.drift(service.local_actor("tester"), run_id)
        assert [(f.kind, f.instance) for f in found] == [("drift", "w.2")]
        logs = cli(home, "logs", run_id, check=True).stdout
        assert "drift     local: w.2: its process died" in logs
    finally:
        cli(home, "destroy", run_id, check=True)
    assert findings(home) == []  # destroyed: in no state, running nowhere
    assert agent_pids(run_id) == {}


def test_an_agent_no_state_knows_is_an_orphan(tmp_path: Path) -> None:
    home, recipes = tmp_path / "home", tmp_path / "recipes"
    (recipes / ".git").mkdir(parents=True)
    for name, text in RECIPES.items():
        (recipes / name).write_text(text)
    code, doc = deploy_json(home, str(recipes / "pair.yaml"))
    assert (code, doc["state"]) == (0, "Ready"), doc
    run_id = str(doc["id"])
    state = home / "runs" / run_id / "tf" / "local" / "terraform.tfstate"
    kept = state.read_text()
    try:
        # As if the service had crashed after starting w.1 and before recording it.
        recorded = json.loads(kept)
        recorded["resources"][0]["instances"] = recorded["resources"][0]["instances"][1:]
        state.write_text(json.dumps(recorded))
        assert findings(home) == [("orphan", run_id, "w.1")]
        done = cli(home, "inventory", "--cloud", "local", "--delete-orphans", "--yes")
        assert done.returncode == 0, done.stderr
        assert sorted(agent_pids(run_id)) == ["w.2"]
        assert findings(home) == []
    finally:
        state.write_text(kept)
        cli(home, "destroy", run_id, check=True)
    assert agent_pids(run_id) == {}
