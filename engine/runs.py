"""RunManager: takes a run through the state machine (DESIGN section 5).

Provisioning applies every cloud root in parallel; then each state waits at the barrier
until every instance has voted. A run stuck in one state longer than its timeout is
aborted with a message naming who has not voted and what they wait for. Phases are
checkpointed in the store, and applying a root again is idempotent, so a run whose process
died is resumed by driving it again (`slipstream resume`) without duplicating resources.

Example (not run as a doctest: it deploys)::

        manager = RunManager(Path(".slipstream"), store, hub, exe)
        run_id = manager.create(deployment, clouds, user="alice")
        manager.drive(run_id)
        # 'Ready'
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.canonical import dumps
from engine.clouds import CloudsConfig
from engine.compiler import compile_deployment
from engine.coordination import Coordinator, token_hash
from engine.errors import SlipstreamError
from engine.files import write_atomic
from engine.hub import Hub
from engine.launcher import token_file
from engine.locks import RunLock
from engine.model import Deployment
from engine.runspec import build_spec, instance_names
from engine.store import NewInstance, NewRun, RunStore
from engine.terraform import TerraformRunner
from engine.terraform_bin import TerraformExe, terraform_env
from engine.terraform_events import TfEvent

BARRIER_STATES = ("Provisioning", "Executing", "SendingReports")
POLL_S = 1.0
TERMINATE_WAIT_S = 900.0


class RunManager:
    """Creates, drives, terminates and resumes runs of one service home."""

    def __init__(
        self, home: Path, store: RunStore, hub: Hub, terraform: TerraformExe, server_url: str = ""
    ) -> None:
        self.home = home
        self.store = store
        self.hub = hub
        self.coordinator = Coordinator(store, hub)
        self.terraform = terraform
        self.server_url = server_url
        self._runners: dict[str, list[TerraformRunner]] = {}
        self._lock = threading.Lock()

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    # -- creation ---------------------------------------------------------------------

    def create(self, dep: Deployment, clouds: CloudsConfig, user: str) -> str:
        """Store a new run with its spec, instances, tokens and compiled roots."""
        run_id = uuid.uuid4().hex[:16]
        documents = compile_deployment(dep, clouds)
        spec = build_spec(dep, clouds)
        spec["cloud_types"] = {name: clouds.get(name).type for name in documents}
        base = self.run_dir(run_id)
        base.mkdir(parents=True, mode=0o700)
        for cloud, doc in documents.items():
            write_atomic(base / "tf" / cloud / "main.tf.json", dumps(doc))
        new_instances, initial = [], {"ss:category": "Deployment", "ss:state": "Initializing"}
        for node, body in spec["nodes"].items():
            ids = list(range(1, int(body["multiplicity"]) + 1))
            initial[f"{node}:multiplicity"] = str(len(ids))
            initial[f"{node}:ids"] = ",".join(str(i) for i in ids)
            for i in ids:
                name = f"{node}.{i}"
                cloud = body["clouds"][(i - 1) % len(body["clouds"])]
                token = secrets.token_urlsafe(32)
                write_atomic(token_file(self.home, run_id, name), token + "\n", mode=0o600)
                new_instances.append(NewInstance(name, node, i, cloud, token_hash(token)))
                initial.update(
                    {f"{name}:nodename": node, f"{name}:id": str(i), f"{name}:cloud": cloud}
                )
                for key, binding in body["inputs"].items():
                    if "value" in binding:
                        initial[f"{name}:{key}"] = str(binding["value"])
        self.store.create_run(
            NewRun(run_id, dep.name, user, dep.keep_running, dep.timeout_s, dumps(spec)),
            new_instances,
            initial,
        )
        self.store.add_event(
            run_id,
            "created",
            f"run of `{dep.name}` created by {user}",
            {"instances": len(new_instances), "clouds": sorted(documents)},
        )
        return run_id

    # -- driving ----------------------------------------------------------------------

    def lock(self, run_id: str, purpose: str, wait_s: float = 0.0) -> RunLock:
        """The lock a process holds while it drives or terminates ``run_id``."""
        return RunLock(self.run_dir(run_id) / "driver.lock", purpose, wait_s)

    def drive(self, run_id: str) -> str:
        """Take the run from wherever it is to Ready or an end state; returns the state.

        Also what resuming is: phases already done are skipped, applies are idempotent.
        """
        with self.lock(run_id, "deploy"):
            return self._drive(run_id)

    def _drive(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        try:
            if run.state in ("Initializing", "Provisioning"):
                self.coordinator.set_state(run_id, "Provisioning")
                self._apply_all(run_id)
                self.store.set_checkpoint(run_id, "applied")
            for state in BARRIER_STATES:
                run = self.store.get_run(run_id)
                assert run is not None
                if run.abort_message is not None:
                    break
                if BARRIER_STATES.index(state) < _index(run.state):
                    continue
                if run.state != state:
                    self.coordinator.set_state(run_id, state)
                if not self._barrier(run_id, state, run.timeout_s):
                    break
            else:
                self.coordinator.set_state(run_id, "Ready")
        except SlipstreamError as err:
            self.coordinator.abort(run_id, str(err))
        return self._after(run_id)

    def _after(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        if run.abort_message is not None:
            if run.state not in ("Aborted", "Cancelled", "Done"):
                self.coordinator.set_state(run_id, "Cancelled" if run.cancelled else "Aborted")
            if run.cancelled or run.keep_running in ("never", "on-success"):
                self._destroy_all(run_id)
        elif run.state == "Ready" and run.keep_running in ("never", "on-error"):
            return self._terminate(run_id)
        final = self.store.get_run(run_id)
        assert final is not None
        return final.state

    def _barrier(self, run_id: str, state: str, timeout_s: int) -> bool:
        expected = set(instance_names(self.coordinator.spec(run_id)))
        run = self.store.get_run(run_id)
        assert run is not None
        deadline = run.state_since + timeout_s
        while True:
            missing = self.coordinator.wait_votes(run_id, state, expected, POLL_S)
            run = self.store.get_run(run_id)
            assert run is not None
            if run.abort_message is not None:
                return False
            if not missing:
                return True
            if time.time() > deadline:
                waits = self.hub.waits_of(run_id)
                who = "; ".join(
                    f"{i}" + (f" (waiting for {', '.join(waits[i])})" if i in waits else "")
                    for i in sorted(missing)
                )
                self.coordinator.abort(
                    run_id,
                    f"timeout: run stayed in {state} longer than {timeout_s}s; not voted: {who}",
                )
                return False

    # -- Terraform --------------------------------------------------------------------

    def _variables(self, run_id: str, cloud_type: str) -> dict[str, Any]:
        variables: dict[str, Any] = {"run_id": run_id}
        if cloud_type == "local":
            variables["launcher"] = [
                sys.executable,
                "-m",
                "engine.launcher",
                "--home",
                str(self.home.resolve()),
            ]
            variables["sandbox_root"] = str((self.run_dir(run_id) / "sandboxes").resolve())
        else:
            tokens = {}
            for inst in self.store.instances(run_id):
                path = token_file(self.home, run_id, inst["name"])
                tokens[inst["name"]] = path.read_text(encoding="utf-8").strip()
            variables.update({"server_url": self.server_url, "agent_tokens": tokens})
            if cloud_type == "ssh":
                variables["agent_path"] = str(
                    Path(__file__).parent / "agent" / "slipstream_agent.py"
                )
        return variables

    def _runner(self, run_id: str, cloud: str) -> TerraformRunner:
        def on_event(event: TfEvent) -> None:
            if (
                event.type
                in ("apply_complete", "apply_errored", "change_summary", "provision_errored")
                or event.level == "error"
            ):
                self.store.add_event(
                    run_id,
                    "terraform",
                    f"{cloud}: {event.message}",
                    {
                        "cloud": cloud,
                        "resource": event.resource,
                        "action": event.action,
                        "elapsed_s": event.elapsed_s,
                    },
                )

        env = terraform_env(self.home)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        runner = TerraformRunner(
            self.terraform, self.run_dir(run_id) / "tf" / cloud, env, on_event=on_event
        )
        with self._lock:
            self._runners.setdefault(run_id, []).append(runner)
        return runner

    def _each_cloud(self, run_id: str, step: str) -> None:
        spec = self.coordinator.spec(run_id)
        clouds: dict[str, str] = spec["cloud_types"]

        def one(cloud: str) -> None:
            runner = self._runner(run_id, cloud)
            variables = self._variables(run_id, clouds[cloud])
            self.store.add_event(run_id, "terraform", f"{cloud}: {step} started")
            runner.init()
            if step == "apply":
                runner.plan(variables)
                runner.apply()
                self._record_outputs(run_id, runner.output())
            else:
                runner.destroy(variables)
            self.store.add_event(run_id, "terraform", f"{cloud}: {step} done")

        with ThreadPoolExecutor(max_workers=max(1, len(clouds))) as pool:
            for future in [pool.submit(one, c) for c in clouds]:
                future.result()

    def _apply_all(self, run_id: str) -> None:
        self._each_cloud(run_id, "apply")

    def _record_outputs(self, run_id: str, outputs: dict[str, Any]) -> None:
        values = {}
        for name, entry in (outputs.get("instances") or {}).items():
            values[f"{name}:hostname"] = str(entry.get("address", ""))
            values[f"{name}:instanceid"] = str(entry.get("id", ""))
        self.coordinator.publish(run_id, values)

    def _destroy_all(self, run_id: str) -> None:
        try:
            self._each_cloud(run_id, "destroy")
            self.store.set_checkpoint(run_id, "destroyed")
            # Nothing left to authenticate: drop the tokens and the empty sandbox root.
            shutil.rmtree(self.run_dir(run_id) / "tokens", ignore_errors=True)
            sandboxes = self.run_dir(run_id) / "sandboxes"
            if sandboxes.is_dir() and not any(sandboxes.iterdir()):
                sandboxes.rmdir()
        except SlipstreamError as err:
            self.store.add_event(run_id, "error", f"destroy failed: {err}")
            self.store.set_checkpoint(run_id, "destroy-failed", str(err))

    # -- terminate --------------------------------------------------------------------

    def terminate(self, run_id: str) -> str:
        """Ready → Finalizing → Done; a run still on its way is cancelled, then destroyed."""
        run = self.store.get_run(run_id)
        if run is None:
            raise SlipstreamError(f"unknown run `{run_id}`")
        if run.state not in ("Ready", "Aborted", "Cancelled", "Done"):
            # Stop a driver in another process first: its barrier sees the abort flag.
            self.coordinator.abort(run_id, "terminated by user", cancel=True)
        # A driver that saw the abort destroys what it applied, then lets go.
        with self.lock(run_id, "destroy", wait_s=TERMINATE_WAIT_S):
            return self._terminate(run_id)

    def _terminate(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        if run.state == "Ready":
            self.coordinator.set_state(run_id, "Finalizing", expect="Ready")
            self._destroy_all(run_id)
            self.coordinator.set_state(run_id, "Done")
        elif run.state in ("Aborted", "Cancelled", "Done"):
            if self.store.get_run(run_id) and run.checkpoint != "destroyed":
                self._destroy_all(run_id)
        else:
            self.coordinator.abort(run_id, "terminated by user", cancel=True)
            for runner in self._runners.get(run_id, []):
                runner.cancel()
            self.coordinator.set_state(run_id, "Cancelled")
            self._destroy_all(run_id)
        final = self.store.get_run(run_id)
        assert final is not None
        return final.state


def run_summary(store: RunStore, run_id: str, secret_keys: set[str]) -> dict[str, Any]:
    """A run as a JSON document: id, state, params (secrets masked), events."""
    run = store.get_run(run_id)
    if run is None:
        raise SlipstreamError(f"unknown run `{run_id}`")
    params = {
        k: ("***" if k in secret_keys else v) for k, v in sorted(store.params(run_id).items())
    }
    return {
        "id": run.id,
        "deployment": run.deployment,
        "user": run.user,
        "state": run.state,
        "abort": run.abort_message,
        "params": params,
        "url": params.get("ss:url.service"),
        "events": [e.to_json() for e in store.events(run_id)],
    }


def _index(state: str) -> int:
    order = ("Initializing", "Provisioning", "Executing", "SendingReports", "Ready")
    return order.index(state) - 1 if state in order else 99
