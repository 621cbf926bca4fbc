"""The inventory: per cloud, the instances labelled with this service against the runs'
Terraform states.

An orphan is live in a cloud and in no run's state (a crash between the cloud creating it
and Terraform recording it can leave one); a ghost is in a run's state and gone from its
cloud; on ``local``, an instance of a state whose process died is drift. An orphan whose
``slipstream-run`` label names a run this service does not know may belong to another
service sharing the account: it is reported, and never deleted.

Example (not run: it asks the clouds)::

        inventory = Inventory(home, store, load_home_clouds(home))
        for report in inventory.take():
            print(report.cloud, *report.findings, sep="\\n  ")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from engine.errors import CloudError, NotFound
from engine.inventory.cloudlister import CloudLister, ListingUnsupported
from engine.inventory.drift import DriftChecker
from engine.inventory.listers import lister_for
from engine.inventory.model import KINDS, CloudInstance, CloudReport, Finding, StateInstance
from engine.inventory.states import cloud_types, live_runs, run_instances
from engine.recipes.clouds import Cloud, CloudsConfig
from engine.store.runstore import RunFilter, RunStore
from providers_map.base import COMMON_VARIABLES

#: The service every machine is labelled with (the roots' ``service`` variable).
SERVICE = str(COMMON_VARIABLES["service"]["default"])
#: Runs in these states are being changed by their driver: their drift is not checked.
BUSY = ("Initializing", "Provisioning", "Executing", "SendingReports", "Finalizing")


class Inventory:
    """Compares the clouds of one service home with its runs' states."""

    def __init__(
        self,
        home: Path,
        store: RunStore,
        clouds: CloudsConfig,
        *,
        service: str = SERVICE,
        listers: Callable[[str, Path], CloudLister] = lister_for,
    ) -> None:
        self.home = home
        self.runs = home / "runs"
        self.store = store
        self.clouds = clouds
        self.service = service
        self.listers = listers

    def take(self, only: str | None = None, drift: DriftChecker | None = None) -> list[CloudReport]:
        """One report per cloud (``only``: that cloud), in name order. With ``drift``, each
        live run at rest also gets Terraform's refresh of its roots (one plan per root)."""
        in_states: dict[str, list[StateInstance]] = {}
        types: dict[str, str] = {}
        runs = live_runs(self.store)
        for run in runs:
            types.update({c: t for c, t in cloud_types(run).items() if c not in types})
            for found in run_instances(self.runs, run):
                in_states.setdefault(found.cloud, []).append(found)
        types.update({name: self.clouds.get(name).type for name in self.clouds.names()})
        if only is not None and only not in types:
            raise NotFound(f"unknown cloud `{only}` (known: {', '.join(sorted(types))})")
        extra: dict[str, list[Finding]] = {}
        if drift is not None:
            for run in runs:
                if run.state not in BUSY:
                    for finding in drift.refresh(run):
                        extra.setdefault(finding.cloud, []).append(finding)
        known = {r.id for r in self.store.list_runs(where=RunFilter(limit=1_000_000))}
        return [
            self._report(name, types[name], in_states.get(name, []), known, extra.get(name, []))
            for name in sorted(types)
            if only is None or name == only
        ]

    def _cloud(self, name: str, cloud_type: str) -> Cloud:
        return self.clouds.get(name) if name in self.clouds.clouds else Cloud(name, cloud_type)

    def _report(
        self,
        name: str,
        cloud_type: str,
        states: list[StateInstance],
        known: set[str],
        extra: list[Finding],
    ) -> CloudReport:
        try:
            lister = self.listers(cloud_type, self.home)
            listed = lister.instances(self._cloud(name, cloud_type), self.service)
        except ListingUnsupported as err:
            return CloudReport(name, cloud_type, False, (), len(states), tuple(extra), str(err))
        except CloudError as err:
            failed = CloudReport(name, cloud_type, False, (), len(states), tuple(extra), str(err))
            return replace(failed, failed=True)
        findings = compare(name, lister, listed, states, known) + extra
        findings.sort(key=lambda f: (KINDS.index(f.kind), f.run_id, f.instance, f.id))
        return CloudReport(name, cloud_type, True, tuple(listed), len(states), tuple(findings))

    def delete(self, cloud: str, orphans: Sequence[Finding]) -> list[Finding]:
        """Remove ``orphans`` of ``cloud`` (only orphans of runs this service knows);
        returns those removed."""
        chosen = [f for f in orphans if f.kind == "orphan" and f.known_run and f.cloud == cloud]
        if not chosen:
            return []
        cloud_type = self.clouds.get(cloud).type
        self.listers(cloud_type, self.home).terminate(
            self.clouds.get(cloud), [CloudInstance(f.id, f.run_id, f.instance, "") for f in chosen]
        )
        return chosen


def compare(
    cloud: str,
    lister: CloudLister,
    listed: Sequence[CloudInstance],
    states: Sequence[StateInstance],
    known_runs: set[str],
) -> list[Finding]:
    """Orphans, and ghosts (or drift, as the lister says) of one cloud.

    Example:
        >>> from engine.inventory.aws import AwsLister
        >>> listed = [CloudInstance("i-1", "r1", "web.1", "running"),
        ...           CloudInstance("i-2", "r1", "web.2", "terminated")]
        >>> states = [StateInstance("r1", "aws-eu", "web.2", 'aws_instance.web["2"]', "i-2")]
        >>> for f in compare("aws-eu", AwsLister(), listed, states, {"r1"}):
        ...     print(f)
        orphan  aws-eu  i-1  run r1 web.1: in no run's state
        ghost   aws-eu  i-2  run r1 web.2: in the run's state, terminated in the cloud
    """

    def key(run_id: str, instance: str, ident: str) -> tuple[str, ...]:
        return (run_id, instance) if lister.match_by == "name" else (ident,)

    live = {key(i.run_id, i.instance, i.id): i for i in listed if i.live}
    seen = {key(i.run_id, i.instance, i.id): i for i in listed}
    held = {key(s.run_id, s.instance, s.id) for s in states}
    findings = []
    for k, instance in live.items():
        if k not in held:
            findings.append(_orphan(cloud, instance, instance.run_id in known_runs))
    for state in states:
        k = key(state.run_id, state.instance, state.id)
        if k not in live:
            findings.append(
                Finding(
                    lister.missing_kind,
                    cloud,
                    state.id if lister.match_by == "id" else "",
                    state.run_id,
                    state.instance,
                    lister.missing(state, seen.get(k)),
                )
            )
    return findings


def _orphan(cloud: str, instance: CloudInstance, known: bool) -> Finding:
    message = "in no run's state"
    if not known:
        message += (
            f"; its run `{instance.run_id or '?'}` is not one of this service's (another "
            "service sharing the account?): not deleted"
        )
    return Finding("orphan", cloud, instance.id, instance.run_id, instance.instance, message, known)
