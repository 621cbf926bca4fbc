"""kill -9 of `slipstream deploy` at a random point of `terraform apply`, then `destroy`.

Shared by ``tests/runs/test_e2e_kill9.py`` (a few rounds) and ``bench/kill9.py`` (20, run
by hand). Each round deploys a run of ``INSTANCES`` instances on `local` in a home of its
own, SIGKILLs the deploying process while Terraform applies, runs `slipstream destroy`,
and reports what was left behind: processes, sandboxes, Terraform state entries, a
Terraform still running. Nothing left is the only success.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.terraform.process import leftover
from tests.e2e import REPO, cli, marked_processes

INSTANCES = 40


@dataclass
class Round:
    """What one round did and what it left behind (``left`` empty: clean)."""

    run_id: str
    killed_after_s: float  # after the deploy started
    mid_apply: bool  # the kill landed while `terraform apply` was still running
    destroy_exit: int
    destroy_s: float
    left: list[str] = field(default_factory=list)


def write_recipes(root: Path, instances: int = INSTANCES) -> Path:
    (root / ".git").mkdir(parents=True, exist_ok=True)
    (root / "many.yaml").write_text(
        "kind: deployment\nname: many\nkeep_running: always\n"
        f"nodes:\n  n: {{component: ubuntu, multiplicity: {instances}}}\n",
        encoding="utf-8",
    )
    return root / "many.yaml"


def one_round(base: Path, recipe: Path, rng: random.Random) -> Round:
    """Deploy, SIGKILL the deploy at a random point of its apply (once a random number of
    instances have started provisioning, plus up to 0.3 s), destroy, look for leftovers."""
    home = base / "home"
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester")
    deploying = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.app", "deploy", str(recipe), "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Up to the 30th instance: ten more still to start keep the kill inside the apply.
    started = rng.randrange(INSTANCES - 10)
    deadline = time.monotonic() + 180
    began = time.monotonic()
    while True:
        applies = list(home.glob("runs/*/tf/local/apply.stdout.jsonl"))
        if applies and applies[0].read_text().count('"provision_start"') >= started:
            break
        if deploying.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the deploy never reached apply (exit {deploying.poll()})")
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.3))
    root = applies[0].parent
    run_id = root.parent.parent.name
    mid_apply = not (root / "apply.status.json").exists()
    deploying.send_signal(signal.SIGKILL)
    deploying.wait()
    result = Round(run_id, round(time.monotonic() - began, 2), mid_apply, 0, 0.0)
    began = time.monotonic()
    done = cli(home, "destroy", run_id, "--json", timeout=600)
    result.destroy_exit = done.returncode
    result.destroy_s = round(time.monotonic() - began, 1)
    if done.returncode != 0:
        result.left.append(f"destroy exited {done.returncode}: {done.stderr.strip()[-300:]}")
    result.left += leftovers(home, run_id)
    return result


def leftovers(home: Path, run_id: str) -> list[str]:
    """Everything of the run still there: processes, sandboxes, state entries, Terraform."""
    found = []
    deadline = time.monotonic() + 10
    while (procs := marked_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if procs:
        found.append(f"{len(procs)} process(es) of the run: {procs}")
    sandboxes = home / "runs" / run_id / "sandboxes"
    if sandboxes.exists():
        found.append(f"sandboxes: {sorted(p.name for p in sandboxes.iterdir())}")
    root = home / "runs" / run_id / "tf" / "local"
    state = root / "terraform.tfstate"
    try:
        resources = json.loads(state.read_text())["resources"]
    except (OSError, ValueError, KeyError) as err:
        found.append(f"state unreadable: {err}")
    else:
        entries = sum(len(r["instances"]) for r in resources)
        if entries:
            found.append(f"{entries} state entries")
    still = leftover(root)
    if still is not None:
        found.append(f"terraform {still.step} still running (pid {still.pid})")
    return found
