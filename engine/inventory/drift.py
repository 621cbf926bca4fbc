"""Drift of one run: what changed in its clouds since Terraform last applied its roots.

Terraform refreshes each root against its cloud and reports every resource that changed
outside it as a ``resource_drift`` message, as ``plan -refresh-only`` does (a normal plan
streams the same messages; the runner of :mod:`engine.terraform` has no refresh-only mode
yet). The plan runs on a copy of the root (configuration, state, variables, and the
providers Terraform installed), so the run's own plan, state and logs are never touched,
and no lock is taken: a check may run beside the run's server. On ``local``, an instance
whose agent process died is drift too; Terraform cannot see it.

Example (not run: it runs Terraform)::

        checker = DriftChecker(home, store, find_terraform(home))
        checker.check(store.get_run("0f3a…"))
        # [Finding(kind='drift', cloud='aws-eu', id='i-0abc…', run_id='0f3a…',
        #          instance='web.1', message='aws_instance.web["1"]: Drift detected (delete)')]
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from engine.errors import TerraformError
from engine.inventory.local import LocalLister
from engine.inventory.model import Finding, StateInstance
from engine.inventory.states import cloud_types, instances_in_state, read_state, state_path
from engine.recipes.clouds import Cloud
from engine.store.runstore import RunRecord, RunStore
from engine.terraform.args import VARS_FILE
from engine.terraform.binary import TerraformExe, terraform_env
from engine.terraform.events import TfEvent
from engine.terraform.runner import TerraformRunner
from providers_map import mapping_for

# What of a root a plan reads; `.terraform` (installed providers) is linked, not copied.
COPIED = ("main.tf.json", ".terraform.lock.hcl", VARS_FILE)


class DriftChecker:
    """Checks runs of one service home for drift."""

    def __init__(self, home: Path, store: RunStore, terraform: TerraformExe) -> None:
        self.home = home
        self.runs = home / "runs"
        self.store = store
        self.terraform = terraform

    def check(self, run: RunRecord) -> list[Finding]:
        """Every root's refresh, and the ``local`` instances whose process died."""
        findings = self.refresh(run)
        for cloud, cloud_type in sorted(cloud_types(run).items()):
            if cloud_type == "local":
                findings.extend(self.dead_local(run, cloud))
        return findings

    def refresh(self, run: RunRecord) -> list[Finding]:
        """Terraform's drift for each root of ``run`` that has a state."""
        findings: list[Finding] = []
        for cloud, cloud_type in sorted(cloud_types(run).items()):
            if read_state(state_path(self.runs, run.id, cloud)) is None:
                continue  # never applied: nothing can have drifted
            resource = mapping_for(cloud_type).instance_resource
            known = {i.address: i for i in instances_in_state(self.runs, run.id, cloud, resource)}
            try:
                events = self._plan(run.id, cloud)
            except TerraformError as err:
                findings.append(Finding("unchecked", cloud, "", run.id, "", str(err)))
                continue
            findings.extend(_drift(run.id, cloud, e, known) for e in events)
        return findings

    def _plan(self, run_id: str, cloud: str) -> list[TfEvent]:
        root = self.runs / run_id / "tf" / cloud
        scratch = Path(tempfile.mkdtemp(prefix=".drift-", dir=self.runs / run_id))
        try:
            for name in COPIED:
                if (root / name).exists():
                    shutil.copy2(root / name, scratch / name)
            # A copy known to be whole: the run's server may be writing the original.
            state = read_state(state_path(self.runs, run_id, cloud))
            (scratch / "terraform.tfstate").write_text(json.dumps(state), encoding="utf-8")
            if (root / ".terraform").is_dir():
                (scratch / ".terraform").symlink_to((root / ".terraform").resolve())
            variables = None
            if (scratch / VARS_FILE).exists():
                variables = json.loads((scratch / VARS_FILE).read_text(encoding="utf-8"))
            events: list[TfEvent] = []
            runner = TerraformRunner(
                self.terraform, scratch, terraform_env(self.home), on_event=events.append
            )
            runner.plan(variables)
            return [e for e in events if e.type == "resource_drift"]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def dead_local(self, run: RunRecord, cloud: str) -> list[Finding]:
        """The ``local`` instances of ``run``'s state whose agent no longer runs."""
        lister = LocalLister(self.home)
        running = {
            (i.run_id, i.instance)
            for i in lister.instances(Cloud(cloud, "local"), "")
            if i.run_id == run.id
        }
        return [
            Finding("drift", cloud, "", run.id, s.instance, lister.missing(s, None))
            for s in instances_in_state(self.runs, run.id, cloud, "terraform_data")
            if (run.id, s.instance) not in running
        ]


def _drift(run_id: str, cloud: str, event: TfEvent, known: dict[str, StateInstance]) -> Finding:
    instance = known.get(event.resource or "")
    return Finding(
        "drift",
        cloud,
        instance.id if instance else "",
        run_id,
        instance.instance if instance else "",
        event.message or f"{event.resource}: changed outside Terraform ({event.action})",
    )
