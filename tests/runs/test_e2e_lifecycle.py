"""Run lifecycle end to end: resuming after the deploying process died, and terminating a
run that is still on its way (real Terraform, real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e import REPO, agent_pids, cli, marked_processes


def write_recipes(root: Path, flag: Path) -> None:
    (root / ".git").mkdir(parents=True)
    (root / "gated.yaml").write_text(f"""\
kind: component
name: gated
image: ubuntu-22.04
inputs:
  flag: {{default: "{flag}"}}
outputs:
  done: {{}}
scripts:
  deployment: |
    ss-display "waiting for the gate"
    while [ ! -f "$(ss-get flag)" ]; do sleep 0.2; done
    ss-set done "yes from $(ss-get nodename).$(ss-get id)"
""")
    (root / "gated-app.yaml").write_text("""\
kind: deployment
name: gated-app
keep_running: always
nodes:
  g: {component: gated, multiplicity: 2}
""")


def start_deploy(home: Path, recipe: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester")
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli.app", "deploy", str(recipe), "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_state(
    home: Path, state: str, deploying: subprocess.Popen[str], seconds: float = 120
) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if deploying.poll() is not None:
            out, err = deploying.communicate()
            raise AssertionError(f"deploy exited {deploying.returncode}: {out}\n{err}")
        listed = cli(home, "list", "--json")
        runs = json.loads(listed.stdout or "[]")
        if runs and runs[0]["state"] == state:
            return str(runs[0]["id"])
        time.sleep(0.5)
    raise AssertionError(f"no run reached {state}: {listed.stdout} {listed.stderr}")


def agent_processes(run_id: str) -> list[str]:
    """One name per agent daemon of the run (a name twice: an instance started twice)."""
    return sorted(name for name, pids in agent_pids(run_id).items() for _ in pids)


def test_resume_after_the_deploying_process_was_killed(tmp_path: Path, outside: Path) -> None:
    home, flag = tmp_path / "home", outside / "gate"  # where isolated instances see it
    write_recipes(tmp_path / "recipes", flag)
    deploying = start_deploy(home, tmp_path / "recipes" / "gated-app.yaml")
    run_id = wait_for_state(home, "Executing", deploying)
    try:
        deploying.send_signal(signal.SIGKILL)
        deploying.wait(timeout=30)
        flag.write_text("open")
        done = cli(home, "resume", run_id, "--json", timeout=300)
        doc = json.loads(done.stdout)
        assert done.returncode == 0, done.stderr
        assert doc["state"] == "Ready"
        assert doc["params"]["g.1:done"] == "yes from g.1"
        assert doc["params"]["g.2:done"] == "yes from g.2"
        # no duplicated resources: one state entry and one agent per instance
        state = json.loads(
            (home / "runs" / run_id / "tf" / "local" / "terraform.tfstate").read_text()
        )
        keys = [i["index_key"] for r in state["resources"] for i in r["instances"]]
        assert sorted(keys) == ["1", "2"]
        assert agent_processes(run_id) == ["g.1", "g.2"]
    finally:
        flag.write_text("open")
        cli(home, "destroy", run_id)
    assert marked_processes(run_id) == []


def test_destroy_cancels_a_run_on_its_way(tmp_path: Path) -> None:
    home, flag = tmp_path / "home", tmp_path / "never-created"
    write_recipes(tmp_path / "recipes", flag)
    deploying = start_deploy(home, tmp_path / "recipes" / "gated-app.yaml")
    run_id = wait_for_state(home, "Executing", deploying)
    done = cli(home, "destroy", run_id, "--json", timeout=300)
    out, _ = deploying.communicate(timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "Cancelled"
    assert deploying.returncode == 1
    assert json.loads(out)["abort"] == "terminated by user"
    deadline = time.monotonic() + 10
    while marked_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked_processes(run_id) == []
    assert not (home / "runs" / run_id / "sandboxes").exists()


def test_a_second_deploy_in_the_same_home_leaves_the_first_run_alone(
    tmp_path: Path, outside: Path
) -> None:
    """Each run's agents follow the server of the process driving that run, not the
    newest process of the home."""
    home, flag = tmp_path / "home", outside / "gate"  # where isolated instances see it
    write_recipes(tmp_path / "recipes", flag)
    (tmp_path / "recipes" / "quick.yaml").write_text(
        "kind: deployment\nname: quick\nkeep_running: never\nnodes:\n  q: {component: ubuntu}\n"
    )
    first = start_deploy(home, tmp_path / "recipes" / "gated-app.yaml")
    run_id = wait_for_state(home, "Executing", first)
    second = cli(home, "deploy", str(tmp_path / "recipes" / "quick.yaml"), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["state"] == "Done"
    flag.write_text("open")
    out, err = first.communicate(timeout=120)
    try:
        assert first.returncode == 0, err
        doc = json.loads(out)
        assert doc["state"] == "Ready"
        assert doc["params"]["g.2:done"] == "yes from g.2"
        again = cli(home, "resume", run_id, "--json")  # nothing left to do: stays Ready
        assert json.loads(again.stdout)["state"] == "Ready"
    finally:
        cli(home, "destroy", run_id)
    done = cli(home, "resume", run_id, "--json")  # a finished run is not revived
    assert json.loads(done.stdout)["state"] == "Done"
    assert marked_processes(run_id) == []
