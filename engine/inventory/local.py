"""The ``local`` lister: the agents this host runs for the runs of one service home.

Example:
    >>> import tempfile
    >>> LocalLister(Path(tempfile.mkdtemp())).instances(Cloud("local", "local"), "slipstream")
    []
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.inventory.cloudlister import CloudLister
from engine.inventory.model import CloudInstance, StateInstance
from engine.recipes.clouds import Cloud


class LocalLister(CloudLister):
    """``local`` instances: the agents this host runs for runs of one service home.

    An instance is its agent process (``python …/runs/RUN/sandboxes/INSTANCE/agent.py
    run``); one in a run's state whose agent is gone has died: that is drift.
    """

    type = "local"
    match_by = "name"
    missing_kind = "drift"

    def __init__(self, home: Path, proc: Path = Path("/proc")) -> None:
        self.runs = home.resolve() / "runs"
        self.proc = proc

    def instances(self, cloud: Cloud, service: str) -> list[CloudInstance]:
        found = []
        for entry in self.proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            named = self._instance(argv)
            if named is not None:
                found.append(CloudInstance(f"pid {entry.name}", *named, "running"))
        return sorted(found, key=lambda i: (i.run_id, i.instance))

    def _instance(self, argv: list[bytes]) -> tuple[str, str] | None:
        """(run, instance) of an agent of this home's runs, from its command line."""
        if len(argv) < 3 or argv[2] != b"run" or not argv[1].endswith(b"/agent.py"):
            return None
        path = Path(os.fsdecode(argv[1]))  # RUNS/run/sandboxes/instance/agent.py
        if len(path.parents) < 4 or path.parents[3] != self.runs:
            return None
        if path.parents[1].name != "sandboxes":
            return None
        return path.parents[2].name, path.parents[0].name

    def terminate(self, cloud: Cloud, instances: Sequence[CloudInstance]) -> None:
        from engine.runs.launcher import stop

        for instance in instances:
            sandbox = self.runs / instance.run_id / "sandboxes" / instance.instance
            stop(instance.run_id, instance.instance, sandbox)

    def missing(self, state: StateInstance, seen: CloudInstance | None) -> str:
        return "its process died: the run's state has it, this host no longer runs it"
