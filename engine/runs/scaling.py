"""Scale actions on a scalable run in Ready (DESIGN section 10; SlipStream's mutable runs).

A scale action is one round of the state machine again, Ready → Provisioning → Executing →
SendingReports → Ready, in which only the instances taking part vote:

- adding: new instances get fresh indices (a per-node high-water mark, ``top``, so an index
  is never reused), their tokens and parameters, and are created by a change of their
  cloud's root that only adds their ``for_each`` keys; they run the full chain while the
  survivors run ``on_vm_add`` in Executing;
- removing: the instances leaving run ``pre_scale`` and send their reports in Provisioning,
  vote, leave the barriers (their tokens stop working), and are destroyed by a change of
  their cloud's root that only removes their keys; the survivors run ``on_vm_remove``.

Before any apply, the plan is checked: it must create (or destroy) exactly the instances of
the action and touch nothing else, else the action fails with the plan's other changes.
Each instance's ``scale.state`` goes ``creating → created → operational`` or ``removing →
removed → gone``.

The same removal serves :func:`drop_failed` (``max_failures``): instances that never
checked in leave the run instead of failing it.

Example (not run: it deploys)::

        Scaler(manager).scale(run_id, parse_scale(["worker=+2"], []), "alice")
        # 'Ready'
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

from engine.canonical import dumps
from engine.coordination.coordinator import Coordinator, token_hash
from engine.coordination.keys import highest_index, live_indices, source_of
from engine.errors import CloudError, Conflict, SlipstreamError, UsageError
from engine.files import write_atomic
from engine.runs import isolation
from engine.runs.capacity import available_mib, check_local_capacity
from engine.runs.endpoints import Endpoints
from engine.runs.launcher import token_file
from engine.runs.locks import RunLock
from engine.runs.params import builtin_params
from engine.runs.scalespec import ScaleAction
from engine.store.runstore import NewInstance, RunStore
from engine.store.scaling import add_instances, clear_votes, remove_instances, set_spec
from engine.terraform.runner import TerraformRunner

#: How often the wait for the leaving instances' votes looks again.
POLL_S = 0.1
#: Instances still not checked in at this share of the run's timeout are failed ones.
CHECK_IN_SHARE = 0.8


class Driver(Protocol):
    """What a scale action needs of :class:`engine.runs.manager.RunManager` (named by
    role: the manager imports this module)."""

    home: Path
    store: RunStore
    coordinator: Coordinator

    def lock(self, run_id: str, purpose: str, wait_s: float = 0.0) -> RunLock: ...
    def run_dir(self, run_id: str) -> Path: ...
    def serving(self, run_id: str) -> None: ...
    def _served(self) -> Endpoints: ...
    def _after(self, run_id: str) -> str: ...
    def _follow(self, run_id: str) -> None: ...
    def _timeout(self, run_id: str) -> int: ...
    def _isolation(self, run_id: str) -> str: ...
    def _runner(
        self, run_id: str, cloud: str, extra_env: dict[str, str] | None = None
    ) -> TerraformRunner: ...
    def _variables(
        self, run_id: str, cloud_type: str, tokens: dict[str, str] | None = None
    ) -> dict[str, Any]: ...
    def _record_outputs(self, run_id: str, outputs: dict[str, Any]) -> None: ...


#: SlipStream's names of the actions (``$SLIPSTREAM_SCALING_ACTION``).
CREATION = "vm_create"
REMOVAL = "vm_remove"
BARRIERS = ("Provisioning", "Executing", "SendingReports")


class Scaler:
    """Runs scale actions (and drops failed instances) for a :class:`RunManager`."""

    def __init__(self, manager: Driver) -> None:
        self.manager = manager
        self.store = manager.store
        self.coordinator = manager.coordinator

    # -- checks (nothing changes) -----------------------------------------------------

    def check(self, run_id: str, action: ScaleAction) -> tuple[list[int], list[str]]:
        """(indices to add, names to remove) for ``action`` on the run as it is now;
        :class:`Conflict` when the run cannot scale now, :class:`UsageError` when the
        action does not fit the run. Nothing is changed."""
        run = self.store.get_run(run_id)
        if run is None:
            raise SlipstreamError(f"unknown run `{run_id}`")
        spec = json.loads(run.spec)
        if not spec.get("scalable"):
            raise Conflict(
                f"run `{run_id}` is not scalable (deploy with --scalable, or `scalable: true`)"
            )
        if run.state != "Ready" or run.abort_message is not None:
            raise Conflict(f"run `{run_id}` is {run.state}: only a run in Ready can scale")
        body = spec["nodes"].get(action.node)
        if body is None:
            raise UsageError(f"scale: run `{run_id}` has no node `{action.node}`")
        ids = live_indices(body)
        if action.add:
            top = highest_index(body)
            new = list(range(top + 1, top + 1 + action.add))
            for i in new:
                cloud = body["clouds"][(i - 1) % len(body["clouds"])]
                if self._resources(self._document(run_id, cloud), action.node) == []:
                    raise UsageError(
                        f"scale: node `{action.node}` has no instance on cloud `{cloud}` to"
                        f" scale from (instance {action.node}.{i} would go there)"
                    )
            return new, []
        if action.remove_count:
            if action.remove_count > len(ids):
                raise UsageError(
                    f"scale: node `{action.node}` has {len(ids)} instance(s);"
                    f" cannot remove {action.remove_count}"
                )
            return [], [f"{action.node}.{i}" for i in ids[len(ids) - action.remove_count :]]
        live = {f"{action.node}.{i}" for i in ids}
        unknown = [n for n in action.remove if n not in live]
        if unknown:
            raise UsageError(
                f"scale: {', '.join(unknown)}: not a live instance of `{action.node}`"
                f" (live: {', '.join(sorted(live, key=_index)) or 'none'})"
            )
        return [], list(action.remove)

    # -- the action -------------------------------------------------------------------

    def scale(self, run_id: str, action: ScaleAction, user: str) -> str:
        """Run one scale action to its end; the run's state after it (Ready, or Aborted
        with the reason when a step failed)."""
        with self.manager.lock(run_id, "scale"):
            new, removed = self.check(run_id, action)  # again, under the lock
            if new:
                local = sum(1 for i in new if self._cloud_type(run_id, action.node, i) == "local")
                if local:
                    check_local_capacity(local, available_mib())
            self.manager.serving(run_id)  # the agents of the round need their server
            self.manager._served()
            names = [f"{action.node}.{i}" for i in new] or removed
            self.store.add_event(
                run_id,
                "scale",
                f"scale {action.describe()} requested by {user}: {' '.join(names)}",
                {"node": action.node, "action": CREATION if new else REMOVAL, "vms": names},
            )
            try:
                if new:
                    self._add(run_id, action.node, new)
                else:
                    self._remove(run_id, action.node, removed)
            except Exception as err:
                message = str(err) if isinstance(err, SlipstreamError) else repr(err)
                self.coordinator.abort(run_id, f"scale {action.describe()} failed: {message}")
                return self.manager._after(run_id)
            state = self.coordinator.refresh(run_id)[0]
            if state == "Ready":
                self.store.add_event(
                    run_id, "scale", f"scale {action.describe()} done", {"vms": names}
                )
            return self.manager._after(run_id)

    def _add(self, run_id: str, node: str, new: list[int]) -> None:
        spec = copy.deepcopy(self.coordinator.spec(run_id))
        body = spec["nodes"][node]
        ids = live_indices(body) + new
        body.update(ids=ids, top=new[-1], multiplicity=len(ids))
        names = [f"{node}.{i}" for i in new]
        spec["scaling"] = _round(spec, CREATION, node, names)
        params = self.store.params(run_id)
        rows, values = [], {f"{node}:ids": _ids(ids), f"{node}:multiplicity": str(len(ids))}
        for i, name in zip(new, names, strict=True):
            cloud = body["clouds"][(i - 1) % len(body["clouds"])]
            token = secrets.token_urlsafe(32)
            write_atomic(token_file(self.manager.home, run_id, name), token + "\n", mode=0o600)
            rows.append(NewInstance(name, node, i, cloud, token_hash(token)))
            values.update(builtin_params(name, body, cloud))
            for key, binding in body["inputs"].items():
                if "value" in binding:
                    values[f"{name}:{key}"] = str(binding["value"])
                elif (found := params.get(source_of(spec, f"{name}:{key}"))) is not None:
                    values[f"{name}:{key}"] = found  # mapped: its source is set already
            for key, default in body.get("output_defaults", {}).items():
                values[f"{name}:{key}"] = str(default)
            values[f"{name}:scale.state"] = "creating"
        add_instances(self.store, run_id, rows, {}, dumps(spec))
        self._new_round(run_id, spec, values)
        for cloud, keys in self._by_cloud(body, node, new).items():
            self._change_root(run_id, cloud, node, body, keys, "create")
        self.coordinator.publish(run_id, {f"{n}:scale.state": "created" for n in names})
        self._finish_round(run_id, names, "operational")

    def _remove(self, run_id: str, node: str, removed: list[str]) -> None:
        spec = copy.deepcopy(self.coordinator.spec(run_id))
        spec["scaling"] = _round(spec, REMOVAL, node, removed)
        self._new_round(run_id, spec, {f"{n}:scale.state": "removing" for n in removed})
        self._await_votes(run_id, set(removed), "Provisioning")  # pre_scale and reports
        self.leave(run_id, node, removed, "removed")
        self._finish_round(run_id, [], "")

    def leave(self, run_id: str, node: str, names: list[str], why: str, failed: int = 0) -> None:
        """``names`` leave the run: out of ``ids``, the barriers and the store's live
        instances (tokens refused), then destroyed by a change of their roots that removes
        only them (``scale.state`` removed → gone)."""
        spec = copy.deepcopy(self.coordinator.spec(run_id))
        body = spec["nodes"][node]
        gone = {_index(n) for n in names}
        ids = [i for i in live_indices(body) if i not in gone]
        body.update(ids=ids, top=highest_index(body), multiplicity=len(ids))
        if failed:
            body["failed"] = int(body.get("failed", 0)) + failed
        remove_instances(self.store, run_id, names, dumps(spec))
        self.coordinator.leave(run_id, set(names), spec)
        values = {f"{node}:ids": _ids(ids), f"{node}:multiplicity": str(len(ids))}
        values.update({f"{n}:scale.state": why for n in names})
        self.coordinator.publish(run_id, values)
        for cloud, keys in self._by_cloud(body, node, sorted(gone)).items():
            self._change_root(run_id, cloud, node, body, keys, "delete")
        self.coordinator.publish(run_id, {f"{n}:scale.state": "gone" for n in names})

    def tolerate(self, run_id: str) -> None:
        """``max_failures``: the instances that have not checked in (voted Provisioning)
        by now leave the run, or the run is aborted naming them (see :meth:`drop`)."""
        late = self.coordinator.expected(run_id) - self.coordinator.voters(run_id, "Provisioning")
        if late:
            share = f"{CHECK_IN_SHARE:.0%} of the {self.manager._timeout(run_id)}s timeout"
            self.drop(run_id, late, f"did not check in within {share}")

    def drop(self, run_id: str, failed: set[str], why: str) -> bool:
        """Failed instances leave the run (an event names them) when no node then has more
        failures than its ``max_failures``; else the run is aborted naming them and False
        is returned. ``why`` says what went wrong ("failed at the cloud")."""
        spec = self.coordinator.spec(run_id)
        by_node: dict[str, list[str]] = {}
        for name in sorted(failed, key=lambda n: (n.rpartition(".")[0], _index(n))):
            by_node.setdefault(name.rpartition(".")[0], []).append(name)
        for node, names in by_node.items():
            body = spec["nodes"][node]
            allowed, before = int(body.get("max_failures", 0)), int(body.get("failed", 0))
            if before + len(names) > allowed:
                self.coordinator.abort(
                    run_id,
                    f"{', '.join(names)} {why}: more than max_failures {allowed} of node"
                    f" `{node}`" + (f" ({before} failed before)" if before else ""),
                )
                return False
        for node, names in by_node.items():
            allowed = spec["nodes"][node].get("max_failures", 0)
            self.store.add_event(
                run_id,
                "dropped",
                f"dropped {', '.join(names)}: {why} (max_failures {allowed})",
                {"node": node, "instances": names},
            )
            self.leave(run_id, node, names, "removed", failed=len(names))
        return True

    # -- the round ----------------------------------------------------------------------

    def _new_round(self, run_id: str, spec: dict[str, Any], values: dict[str, str]) -> None:
        """Ready → Provisioning with the new spec, every barrier open again, and the
        instances live now (new ones included, none removed yet) expected to vote."""
        set_spec(self.store, run_id, dumps(spec))
        clear_votes(self.store, run_id, BARRIERS)
        live = {i["name"] for i in self.store.instances(run_id) if not i["removed"]}
        self.coordinator.rescale(run_id, spec, live)
        self.coordinator.publish(run_id, values)
        if not self.coordinator.set_state(run_id, "Provisioning", expect="Ready"):
            raise Conflict(f"run `{run_id}` left Ready before its scale action started")

    def _finish_round(self, run_id: str, names: list[str], final: str) -> None:
        self.coordinator.arm(run_id, "Provisioning")
        self.manager._follow(run_id)
        if final and self.coordinator.refresh(run_id)[0] == "Ready":
            self.coordinator.publish(run_id, {f"{n}:scale.state": final for n in names})

    def _await_votes(self, run_id: str, names: set[str], state: str) -> None:
        """Wait (the run's timeout at most) until ``names`` voted ``state``."""
        timeout_s = self.manager._timeout(run_id)
        deadline = time.monotonic() + timeout_s
        while True:
            abort = self.coordinator.refresh(run_id)[1]
            if abort is not None:
                raise SlipstreamError(abort)
            missing = names - self.coordinator.voters(run_id, state)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise SlipstreamError(
                    f"timeout: {', '.join(sorted(missing, key=_index))} did not finish"
                    f" `pre_scale` and their reports within {timeout_s:g}s"
                )
            time.sleep(POLL_S)

    # -- Terraform ------------------------------------------------------------------------

    def _root(self, run_id: str, cloud: str) -> Path:
        return self.manager.run_dir(run_id) / "tf" / cloud / "main.tf.json"

    def _document(self, run_id: str, cloud: str) -> dict[str, Any]:
        path = self._root(run_id, cloud)
        if not path.exists():
            return {}
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return doc

    @staticmethod
    def _resources(doc: dict[str, Any], node: str) -> list[tuple[str, dict[str, Any]]]:
        """(address, body) of every resource of ``doc`` made once per instance of ``node``
        (its ``for_each`` maps index → {instance, index})."""
        found = []
        for kind, named in (doc.get("resource") or {}).items():
            for name, body in named.items():
                each = body.get("for_each") if isinstance(body, dict) else None
                if isinstance(each, dict) and (
                    name == node
                    or any(str(v.get("instance", "")).startswith(f"{node}.") for v in each.values())
                ):
                    found.append((f"{kind}.{name}", body))
        return found

    def _cloud_type(self, run_id: str, node: str, index: int) -> str:
        body = self.coordinator.spec(run_id)["nodes"][node]
        cloud = body["clouds"][(index - 1) % len(body["clouds"])]
        return str(body["cloud_types"][cloud])

    @staticmethod
    def _by_cloud(body: dict[str, Any], node: str, indices: list[int]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for i in indices:
            found.setdefault(body["clouds"][(i - 1) % len(body["clouds"])], []).append(i)
        return found

    def _change_root(
        self,
        run_id: str,
        cloud: str,
        node: str,
        body: dict[str, Any],
        changed: list[int],
        action: str,
    ) -> None:
        """Rewrite ``cloud``'s root with the node's live instances on it, plan, check the
        plan does ``action`` (create/delete) to exactly the ``changed`` instances and
        nothing else, then apply it. A refused plan leaves the old root in place."""
        path = self._root(run_id, cloud)
        before = path.read_text(encoding="utf-8")
        doc = json.loads(before)
        clouds_of = body["clouds"]
        keep = [i for i in live_indices(body) if clouds_of[(i - 1) % len(clouds_of)] == cloud]
        addresses = []
        for address, resource in self._resources(doc, node):
            resource["for_each"] = {str(i): {"instance": f"{node}.{i}", "index": i} for i in keep}
            addresses.append(address)
        write_atomic(path, dumps(doc))
        clouds: dict[str, str] = self.coordinator.spec(run_id)["cloud_types"]
        extra = {}
        if action == "create" and clouds[cloud] == "local":
            extra[isolation.BWRAP_ENV] = self.manager._isolation(run_id)
        runner = self.manager._runner(run_id, cloud, extra)
        variables = self.manager._variables(run_id, clouds[cloud])
        runner.init()
        plan = runner.plan(variables)
        wanted = {f'{a}["{i}"]' for a in addresses for i in changed}
        planned = {address: act for address, act in plan.resource_changes}
        others = {a: act for a, act in planned.items() if a not in wanted or act != action}
        missing = sorted(wanted - set(planned))
        self.store.add_event(
            run_id,
            "plan",
            f"{cloud}: scale plan: {len(planned)} change(s), "
            + ", ".join(f"{act} {a}" for a, act in sorted(planned.items())),
            {"cloud": cloud, "changes": sorted(planned.items())},
        )
        if others or missing:
            write_atomic(path, before)
            what = ", ".join(f"{act} {a}" for a, act in sorted(others.items()))
            raise CloudError(
                f"{cloud}: the scale plan would also {what or 'miss ' + ', '.join(missing)};"
                " refused, nothing applied"
            )
        self.store.add_event(run_id, "terraform", f"{cloud}: scale apply started")
        runner.apply()
        self.manager._record_outputs(run_id, runner.output())
        self.store.add_event(run_id, "terraform", f"{cloud}: scale apply done")


def _round(spec: dict[str, Any], action: str, node: str, names: list[str]) -> dict[str, Any]:
    """What the agents of a round are told: its number, action, node and instances."""
    number = int((spec.get("scaling") or {}).get("round", 0)) + 1
    return {"round": number, "action": action, "node": node, "vms": names}


def _ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


def _index(name: str) -> int:
    return int(name.rpartition(".")[2])
