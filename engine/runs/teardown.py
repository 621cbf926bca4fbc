"""What a run's folder alone is enough for: its roots destroyed, its leftovers swept.

A run folder (``runs/<id>/`` under the service home) holds one Terraform root per cloud,
each with its state and the variables of its last plan, and the `local` cloud's sandboxes.
:func:`destroy_from_state` destroys everything those states hold without the run store
(``slipstream destroy --from-state RUN``, for when the store is damaged or gone), and
:func:`sweep_sandboxes`, which every destroy of a `local` root ends with, stops instances
that Terraform no longer tracks: Terraform never runs the destroy-time provisioner of a
*tainted* resource, which is what an instance becomes when its start was interrupted.

Example (not run: it destroys)::

    for line in destroy_from_state(Path(".slipstream"), "3f2a9c1e", find_terraform(home)):
        print(line)
    # local: destroyed 4 resource(s)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import SlipstreamError
from engine.runs.launcher import clear_leftovers
from engine.runs.locks import RunLock
from engine.terraform.args import VARS_FILE
from engine.terraform.binary import TerraformExe, terraform_env
from engine.terraform.runner import TerraformRunner

# What a run id may be: never a path (no `/`, no `..`).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def launcher_argv(home: Path) -> list[str]:
    """How Terraform runs the `local` launcher (``start`` or ``stop`` is appended)."""
    return [sys.executable, "-m", "engine.runs.launcher", "--home", str(home.resolve())]


def runner_env(home: Path) -> dict[str, str]:
    """Terraform's environment for a run's roots; the launcher it runs imports the engine."""
    env = terraform_env(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def sweep_sandboxes(home: Path, run_id: str) -> list[str]:
    """Stop every instance of ``run_id`` whose sandbox is still there once its `local`
    root is destroyed (the launcher's own ``stop``, as Terraform would have run it), and
    remove the emptied sandbox folder; returns the instances stopped.

    Example: ``sweep_sandboxes(home, "3f2a9c1e")`` → ``['n.13']`` after an interrupted start.
    """
    sandboxes = home / "runs" / run_id / "sandboxes"
    swept = clear_leftovers(run_id, sandboxes)
    if sandboxes.is_dir() and not any(sandboxes.iterdir()):
        sandboxes.rmdir()
    return swept


def destroy_from_state(home: Path, run_id: str, terraform: TerraformExe) -> Iterator[str]:
    """Destroy what every root of the run's folder holds, with no run store; yields a line
    per step. Takes the run's lock (a driver still at work must be stopped first), waits
    for (or interrupts) a Terraform left running, then drops the agents' tokens.

    Raises :class:`SlipstreamError` when the folder is missing or a root's destroy fails
    (after trying every root).
    """
    if not RUN_ID.fullmatch(run_id):
        raise SlipstreamError(f"`{run_id}` is not a run id")
    run_dir = home / "runs" / run_id
    if not run_dir.is_dir():
        raise SlipstreamError(f"no folder for run `{run_id}` in {home / 'runs'}")
    roots = sorted(p.parent for p in (run_dir / "tf").glob("*/main.tf.json"))
    if not roots:
        raise SlipstreamError(f"no Terraform roots in {run_dir / 'tf'}: nothing to destroy from")
    failed = []
    with RunLock(run_dir / "driver.lock", "destroy --from-state"):
        for root in roots:
            cloud = root.name
            try:
                yield f"{cloud}: {_destroy_root(home, root, terraform)}"
            except SlipstreamError as err:
                failed.append(cloud)
                yield f"{cloud}: destroy failed: {err}"
        if not failed:
            for name in sweep_sandboxes(home, run_id):
                yield f"local: stopped {name}, which Terraform no longer tracked"
            shutil.rmtree(run_dir / "tokens", ignore_errors=True)
    if failed:
        raise SlipstreamError(f"destroy failed for {', '.join(failed)}: see above")


def _destroy_root(home: Path, root: Path, terraform: TerraformExe) -> str:
    runner = TerraformRunner(terraform, root, runner_env(home))
    found = runner.adopt(interrupt=True)
    waited = f"interrupted terraform {found.step} (pid {found.pid}); " if found else ""
    if _entries(root) == 0:
        return waited + "nothing in its state"
    variables: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        variables = json.loads((root / VARS_FILE).read_text(encoding="utf-8"))
    runner.init()
    result = runner.destroy(variables or None)
    return waited + f"destroyed {result.changes.get('remove', 0)} resource(s)"


def _entries(root: Path) -> int | None:
    """Resource instances in a root's state; None when the state cannot be read."""
    try:
        state = json.loads((root / "terraform.tfstate").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError):
        return None
    return sum(len(r.get("instances", [])) for r in state.get("resources", []))
