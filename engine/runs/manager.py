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

import hashlib
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from engine.agent import AGENT_FILE
from engine.canonical import dumps
from engine.compile.compiler import compile_deployment
from engine.compile.runspec import build_spec
from engine.coordination.coordinator import Coordinator, token_hash
from engine.coordination.hub import Hub
from engine.coordination.keys import mapped_copies, with_copies
from engine.errors import SlipstreamError, StateLocked, TerraformError
from engine.files import make_dirs, write_atomic
from engine.recipes.clouds import CloudsConfig
from engine.recipes.model import Deployment
from engine.runs import isolation
from engine.runs.capacity import available_mib, check_local_capacity
from engine.runs.endpoints import Endpoints
from engine.runs.launcher import server_file, token_file
from engine.runs.locks import RunLock, RunLocked
from engine.runs.params import builtin_params
from engine.runs.scaling import CHECK_IN_SHARE, Scaler
from engine.runs.teardown import launcher_argv, runner_env, sweep_sandboxes
from engine.store.runstore import NewInstance, NewRun, RunStore
from engine.terraform.binary import TerraformExe
from engine.terraform.events import TfEvent
from engine.terraform.pgbackend import PgBackend
from engine.terraform.runner import TerraformRunner

# How often a running apply looks at the abort flag, and the driver at flags another
# process may have changed (a `destroy` from another shell); barriers do not wait on it.
POLL_S = 0.1
TERMINATE_WAIT_S = 900.0
CANCEL_WAIT_S = 300.0
STATE_LOCK_WAIT_S = 300.0
# How long an aborted run waits, before it is destroyed, for the reports of its instances
# (agents send them after a failure, an abort or a timeout: SlipStream issue #170).
REPORT_GRACE_S = 45.0
# Events a run's document carries: its last ones (an instance may post a thousand).
SUMMARY_EVENTS = 1000
# The share of a state's timeout left when instances not checked in count as failed.
TOLERANCE = 1.0 - CHECK_IN_SHARE
# States of a run still on its way to Ready, in order.
T = TypeVar("T")
_ON_THE_WAY = ("Initializing", "Provisioning", "Executing", "SendingReports")


class RunManager:
    """Creates, drives, terminates and resumes runs of one service home."""

    def __init__(
        self,
        home: Path,
        store: RunStore,
        hub: Hub,
        terraform: TerraformExe,
        *,
        coordinator: Coordinator | None = None,
        serve: Callable[[], Endpoints] | None = None,
    ) -> None:
        self.home = home
        self.store = store
        self.coordinator = coordinator or Coordinator(store, hub)
        self.hub = self.coordinator.hub
        self.terraform = terraform
        # Starts (once) the server agents talk to and returns its addresses; None: no agents.
        self.serve = serve
        self.endpoints = Endpoints("", "")
        self._creations: dict[str, RunLock] = {}
        self._stopping = threading.Event()
        self._serving: Future[Endpoints] | None = None
        # On PostgreSQL (the scaled mode) Terraform keeps its state there too, so any
        # worker can continue any run and the backend's lock stops a second apply.
        conninfo = getattr(store.database, "conninfo", None)
        self.state_backend = PgBackend.from_url(conninfo) if conninfo else None
        self._workspaces: set[tuple[str, str]] = set()  # prepared by this process

    def stop(self) -> None:
        """The process is stopping: running drives return at their next step (Terraform is
        interrupted cleanly, its state kept) without aborting their runs, which resume from
        their checkpoints when driven again."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (a drive that returned may not be finished)."""
        return self._stopping.is_set()

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    # -- creation ---------------------------------------------------------------------

    def create(
        self,
        dep: Deployment,
        clouds: CloudsConfig,
        user: str,
        *,
        hold: bool = False,
        origin: dict[str, Any] | None = None,
        recipes: Mapping[str, Path] | None = None,
        images: Mapping[tuple[str, str], str] | None = None,
    ) -> str:
        """Store a new run with its spec, instances, tokens and compiled roots; the run's
        log says which file each recipe (``recipes``: name → file) came from.

        ``images``: (node, cloud) → a built image its instances there boot, skipping the
        install steps; the log and ``<instance>:image.id`` say what each booted from.

        The creating process holds the run's lock until its first :meth:`drive` ends (or
        :meth:`release`), so no other process (a resident server taking over runs) starts
        driving it in between. ``hold``: the run is planned, then waits for an approval.
        """
        local = sum(
            clouds.get(node.cloud_of(i)).type == "local"
            for node in dep.nodes.values()
            for i in node.instance_ids()
        )
        if local:
            check_local_capacity(local, available_mib())
        run_id = uuid.uuid4().hex[:16]
        images = dict(images or {})
        documents = compile_deployment(dep, clouds, images)
        spec = build_spec(dep, clouds)
        for (node_name, cloud), image_id in images.items():
            spec["nodes"][node_name].setdefault("built", {})[cloud] = image_id
        spec["cloud_types"] = {name: clouds.get(name).type for name in documents}
        base = self.run_dir(run_id)
        make_dirs(base.parent)
        base.mkdir(mode=0o700)
        creation = self.lock(run_id, "deploy")
        creation.acquire()
        self._creations[run_id] = creation
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
                initial.update(builtin_params(name, body, cloud))
                if (node, cloud) in images:
                    initial[f"{name}:image.id"] = images[node, cloud]
                    initial[f"{name}:image.built"] = images[node, cloud]
                for key, binding in body["inputs"].items():
                    if "value" in binding:
                        initial[f"{name}:{key}"] = str(binding["value"])
                for key, default in body.get("output_defaults", {}).items():
                    initial[f"{name}:{key}"] = str(default)
        new_run = NewRun(
            run_id,
            dep.name,
            user,
            dep.keep_running,
            dep.timeout_s,
            dumps(spec),
            origin=dumps(origin or {}),
            approval="pending" if hold else "",
        )
        self.store.create_run(new_run, new_instances, with_copies(mapped_copies(spec), initial))
        self.store.add_event(
            run_id,
            "created",
            f"run of `{dep.name}` created by {user}",
            {"instances": len(new_instances), "clouds": sorted(documents)},
        )
        for (node_name, cloud), image_id in sorted(images.items()):
            self.store.add_event(
                run_id,
                "image",
                f"{node_name} on {cloud}: boots from built image {image_id}"
                " (install steps skipped)",
                {"node": node_name, "cloud": cloud, "image": image_id},
            )
        for name, path in sorted((recipes or {}).items()):
            self.store.add_event(run_id, "recipe", f"`{name}` from {path}", {"file": str(path)})
        return run_id

    # -- driving ----------------------------------------------------------------------

    def lock(self, run_id: str, purpose: str, wait_s: float = 0.0) -> RunLock:
        """The lock a process holds while it drives or terminates ``run_id``."""
        return RunLock(self._lock_path(run_id), purpose, wait_s)

    def _lock_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "driver.lock"

    def drive(self, run_id: str) -> str:
        """Take the run from wherever it is to Ready or an end state; returns the state.

        Also what resuming is: phases already done are skipped, applies are idempotent.
        Only the process holding the run's lock serves its agents (``serve``).
        """
        try:
            with self.lock(run_id, "deploy"):
                if self.serve is not None:
                    # Starting the server (importing it) overlaps Terraform's init and plan;
                    # agents need it once the apply starts them.
                    self._serving = ThreadPoolExecutor(1).submit(self._serve_run, run_id)
                run = self.store.get_run(run_id)
                assert run is not None
                if run.approval in ("pending", "rejected") and run.abort_message is None:
                    return self._plan_only(run_id)
                return self._drive(run_id)
        finally:
            self.release(run_id)

    def serving(self, run_id: str) -> None:
        """Start (once) the server the agents of ``run_id`` talk to and point them at it:
        a later action on a Ready run (a scale) from a process that did not drive it."""
        if self.serve is not None:
            self._serving = ThreadPoolExecutor(1).submit(self._serve_run, run_id)

    def _serve_run(self, run_id: str) -> Endpoints:
        assert self.serve is not None
        self.endpoints = self.serve()
        write_atomic(server_file(self.run_dir(run_id)), self.endpoints.local + "\n")
        return self.endpoints

    def _served(self) -> Endpoints:
        """The server's addresses once it listens (waiting for its start if need be)."""
        if self._serving is not None:
            return self._serving.result()
        return self.endpoints

    def release(self, run_id: str) -> None:
        """Let go of the lock taken when this process created ``run_id`` (if it did)."""
        creation = self._creations.pop(run_id, None)
        if creation is not None:
            creation.release()

    def _plan_only(self, run_id: str) -> str:
        """A run held for approval: plan every cloud once (the approver sees the plan)."""
        run = self.store.get_run(run_id)
        assert run is not None
        if run.checkpoint != "planned":
            try:
                self._each_cloud(run_id, "plan")
                self.store.set_checkpoint(run_id, "planned")
                self.store.add_event(run_id, "approval", "planned: waiting for an approval")
            except Exception as err:
                message = str(err) if isinstance(err, SlipstreamError) else repr(err)
                self.coordinator.abort(run_id, f"plan failed: {message}")
                return self._after(run_id)
        return run.state

    def _drive(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        try:
            if run.abort_message is None and run.state in ("Initializing", "Provisioning"):
                if run.state == "Initializing":
                    self.coordinator.set_state(run_id, "Provisioning", expect="Initializing")
                self._apply_all(run_id)
                self.store.set_checkpoint(run_id, "applied")
                self._scale_states(run_id, "creating", "created")
            # The clouds are applied: the Provisioning barrier may release once all voted.
            # From here the barriers move the run themselves, in the votes' write path.
            self._served()
            self.coordinator.arm(run_id, "Provisioning")
            self._follow(run_id)
            if self.coordinator.refresh(run_id)[0] == "Ready":
                self._scale_states(run_id, "created", "operational")
        except Exception as err:
            if self._stopping.is_set():
                return self.coordinator.flags(run_id)[0]  # resumed at the next start
            message = str(err) if isinstance(err, SlipstreamError) else f"internal error: {err!r}"
            self.coordinator.abort(run_id, message)
        if self._stopping.is_set():
            return self.coordinator.flags(run_id)[0]
        return self._after(run_id)

    def _scale_states(self, run_id: str, before: str, after: str) -> None:
        """Move the ``scale.state`` of every live instance at ``before`` to ``after``."""
        values = self.coordinator.cache(run_id).values
        live = self.coordinator.expected(run_id)
        moved = {
            f"{name}:scale.state": after
            for name in live
            if values.get(f"{name}:scale.state") == before
        }
        if moved:
            self.coordinator.publish(run_id, moved)

    def _follow(self, run_id: str) -> None:
        """Wait while the run goes to Ready; abort it if it stays in one state too long."""
        timeout_s = self._timeout(run_id)
        tolerated = False
        while True:
            state, abort = self.coordinator.refresh(run_id)
            if abort is not None or state not in _ON_THE_WAY or self._stopping.is_set():
                return
            deadline = self.coordinator.cache(run_id).state_since + timeout_s
            left = deadline - time.time()
            if state == "Provisioning" and not tolerated and left <= timeout_s * TOLERANCE:
                tolerated = True  # max_failures: who has not checked in by now is dropped
                Scaler(self).tolerate(run_id)
                continue
            if left <= 0:
                self.coordinator.abort(run_id, self._timeout_message(run_id, state, timeout_s))
                return
            self.coordinator.wait_change(run_id, state, min(POLL_S, left))

    def _timeout(self, run_id: str) -> int:
        run = self.store.get_run(run_id)
        assert run is not None
        return run.timeout_s

    def _timeout_message(self, run_id: str, state: str, timeout_s: float) -> str:
        missing = self.coordinator.expected(run_id) - self.coordinator.voters(run_id, state)
        waits = self.hub.waits_of(run_id)
        who = "; ".join(
            f"{i}" + (f" (waiting for {', '.join(waits[i])})" if i in waits else "")
            for i in sorted(missing)
        )
        return f"timeout: run stayed in {state} longer than {timeout_s:g}s; not voted: {who}"

    def _after(self, run_id: str) -> str:
        """What ``keep_running`` and the abort flag decide once the run stopped moving."""
        run = self.store.get_run(run_id)
        assert run is not None
        if run.abort_message is not None:
            if run.state not in ("Aborted", "Cancelled", "Done"):
                self.coordinator.set_state(run_id, "Cancelled" if run.cancelled else "Aborted")
            if run.cancelled or run.keep_running in ("never", "on-success"):
                if not run.cancelled:
                    self._await_reports(run_id)
                self._destroy_all(run_id)
        elif run.state == "Finalizing" or (
            run.state == "Ready" and run.keep_running in ("never", "on-error")
        ):
            return self._terminate(run_id)
        final = self.store.get_run(run_id)
        assert final is not None
        return final.state

    def _await_reports(self, run_id: str) -> None:
        """Before destroying an aborted run, give every instance whose agent started a
        moment to send its report (its logs say why the run failed)."""
        booted = self.coordinator.voters(run_id, "Provisioning")
        deadline = time.monotonic() + REPORT_GRACE_S
        while True:
            missing = booted - {r["instance"] for r in self.store.reports(run_id)}
            if not missing:
                return
            if time.monotonic() > deadline:
                self.store.add_event(
                    run_id,
                    "report",
                    f"no report from {', '.join(sorted(missing))} after {REPORT_GRACE_S:g}s",
                    {"instances": sorted(missing)},
                )
                return
            time.sleep(POLL_S * 2)

    # -- Terraform --------------------------------------------------------------------

    def _variables(
        self, run_id: str, cloud_type: str, tokens: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A root's input variables; the agents' ``tokens`` are the run's unless given."""
        variables: dict[str, Any] = {"run_id": run_id}
        if cloud_type == "local":
            variables["launcher"] = launcher_argv(self.home)
            variables["sandbox_root"] = str((self.run_dir(run_id) / "sandboxes").resolve())
        else:
            if tokens is None:
                tokens = {}
                for inst in self.store.instances(run_id):
                    path = token_file(self.home, run_id, inst["name"])
                    tokens[inst["name"]] = path.read_text(encoding="utf-8").strip()
            endpoints = self._served()
            variables.update(
                {
                    "server_url": endpoints.remote,
                    "server_fingerprint": endpoints.fingerprint,
                    "agent_tokens": tokens,
                }
            )
            if cloud_type == "ssh":
                variables["agent_path"] = str(AGENT_FILE)
            else:
                variables["agent_sha256"] = hashlib.sha256(AGENT_FILE.read_bytes()).hexdigest()
        return variables

    def _runner(
        self,
        run_id: str,
        cloud: str,
        extra_env: dict[str, str] | None = None,
        errored: list[TfEvent] | None = None,
    ) -> TerraformRunner:
        """A runner of ``cloud``'s root whose notable events go to the run's log (and its
        errored resources to ``errored``)."""

        def on_event(event: TfEvent) -> None:
            if errored is not None and event.type in ("apply_errored", "provision_errored"):
                errored.append(event)
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

        root = self.run_dir(run_id) / "tf" / cloud
        env = runner_env(self.home) | (extra_env or {})
        if self.state_backend is not None:
            self.state_backend.write(root)
            env |= self.state_backend.env(run_id, cloud)
            if (run_id, cloud) not in self._workspaces:
                self.state_backend.prepare(self.terraform.argv, root, env)
                self._workspaces.add((run_id, cloud))
        return TerraformRunner(self.terraform, root, env, on_event=on_event)

    def _each_cloud(self, run_id: str, step: str) -> None:
        """Run ``step`` (apply or destroy) on every cloud root at once.

        While applying, an abort (from an agent, a timeout or ``destroy`` in another process)
        cancels the running Terraform commands; so does an interrupt of this process.
        """
        spec = self.coordinator.spec(run_id)
        clouds: dict[str, str] = spec["cloud_types"]
        extra_env = {}
        if step == "apply" and "local" in clouds.values():
            extra_env[isolation.BWRAP_ENV] = self._isolation(run_id)
        errored: dict[str, list[TfEvent]] = {cloud: [] for cloud in clouds}
        runners = {c: self._runner(run_id, c, extra_env, errored[c]) for c in clouds}

        def one(cloud: str) -> None:
            runner = runners[cloud]
            variables = self._variables(run_id, clouds[cloud])
            self._take_over(run_id, cloud, runner, cancel=step == "destroy")
            self.store.add_event(run_id, "terraform", f"{cloud}: {step} started")
            _retry_locked(runner.init)
            if step == "plan":
                plan = _retry_locked_result(lambda: runner.plan(variables))
                self.store.add_event(
                    run_id,
                    "plan",
                    f"{cloud}: {plan.changes.get('add', 0)} to add, "
                    f"{plan.changes.get('change', 0)} to change, "
                    f"{plan.changes.get('remove', 0)} to destroy",
                    {"cloud": cloud, "changes": plan.changes},
                )
            elif step == "apply":
                _retry_locked(lambda: runner.plan(variables))
                self._served()  # the agents the apply starts need their server
                try:
                    if self.state_backend is not None:
                        # The pg backend refuses a lock while any other command of the
                        # database briefly holds its creation lock: the saved plan is
                        # applied once free.
                        _retry_locked(runner.apply)
                    else:
                        runner.apply()
                except TerraformError as err:
                    if not self._tolerate_apply(run_id, cloud, errored[cloud], err):
                        raise
                self._record_outputs(run_id, runner.output())
            else:
                _retry_locked(lambda: runner.destroy(variables))
            self.store.add_event(run_id, "terraform", f"{cloud}: {step} done")

        pool = ThreadPoolExecutor(max_workers=max(1, len(clouds)))
        futures = [pool.submit(one, c) for c in clouds]
        try:
            while True:
                _, pending = wait(futures, timeout=POLL_S)
                if not pending:
                    break
                if step in ("apply", "plan") and (
                    self._stopping.is_set() or self.coordinator.refresh(run_id)[1] is not None
                ):
                    for runner in runners.values():
                        runner.cancel()
        except BaseException:
            for runner in runners.values():
                runner.cancel()
            wait(futures, timeout=CANCEL_WAIT_S)
            raise
        finally:
            pool.shutdown(wait=False)
        for future in futures:
            future.result()

    def _tolerate_apply(
        self, run_id: str, cloud: str, errored: list[TfEvent], err: TerraformError
    ) -> bool:
        """``max_failures``: when only instances failed in the apply of ``cloud`` (not a
        shared resource), drop them if their nodes tolerate it; False: the error stands."""
        spec = self.coordinator.spec(run_id)
        failed = set()
        for event in errored:
            if not event.resource:
                continue
            name, _, key = event.resource.partition("[")
            node, index = name.rsplit(".", 1)[-1], key.strip('"]')
            if node not in spec["nodes"] or not index.isdigit():
                return False  # a shared resource failed: no instance to drop
            failed.add(f"{node}.{index}")
        if not failed or self._stopping.is_set() or self.coordinator.refresh(run_id)[1]:
            return False
        why = f"failed at the cloud `{cloud}` ({err})"
        return Scaler(self).drop(run_id, failed, why.replace("\n", " ")[:600])

    def _isolation(self, run_id: str) -> str:
        """The bwrap every `local` launcher of this apply uses ("" for none), found once,
        with one warning event saying what is not isolated when there is none."""
        bwrap, reason = isolation.probe()
        if bwrap is None:
            self.store.add_event(
                run_id, "warning", isolation.not_isolated_warning(reason), {"cloud": "local"}
            )
        return bwrap or ""

    def _take_over(self, run_id: str, cloud: str, runner: TerraformRunner, cancel: bool) -> None:
        """Wait for a Terraform command a dead driver left running in the root (it is
        finishing and saving its state); when destroying, interrupt its apply first."""
        found = runner.leftover()
        if found is None:
            return
        interrupt = cancel and found.step in ("init", "plan", "apply")
        how = "interrupting" if interrupt else "waiting for"
        self.store.add_event(
            run_id,
            "terraform",
            f"{cloud}: {how} terraform {found.step} (pid {found.pid}), left running by "
            f"a process that died (pid {found.driver})",
            {"cloud": cloud, "pid": found.pid},
        )
        runner.adopt(interrupt=interrupt)

    def _apply_all(self, run_id: str) -> None:
        self._each_cloud(run_id, "apply")

    def _record_outputs(self, run_id: str, outputs: dict[str, Any]) -> None:
        values = {}
        for name, entry in (outputs.get("instances") or {}).items():
            values[f"{name}:hostname"] = str(entry.get("address", ""))
            values[f"{name}:instanceid"] = str(entry.get("id", ""))
        self.coordinator.publish(run_id, values)

    def _destroy_all(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None and run.checkpoint == "destroyed":
            return
        try:
            self._each_cloud(run_id, "destroy")
            for name in sweep_sandboxes(self.home, run_id):
                self.store.add_event(
                    run_id,
                    "terraform",
                    f"local: stopped {name}, which Terraform no longer tracked"
                    " (an interrupted start)",
                    {"instance": name},
                )
            self.store.set_checkpoint(run_id, "destroyed")
            # Nothing left to authenticate: drop the tokens.
            shutil.rmtree(self.run_dir(run_id) / "tokens", ignore_errors=True)
            self.coordinator.retire(run_id)
        except Exception as err:
            self.store.add_event(run_id, "error", f"destroy failed: {err}")
            self.store.set_checkpoint(run_id, "destroy-failed", str(err))

    # -- plans without a run -----------------------------------------------------------

    def preview(self, dep: Deployment, clouds: CloudsConfig) -> dict[str, dict[str, Any]]:
        """What deploying ``dep`` would do: ``terraform plan`` of each compiled root, in
        parallel, in a scratch folder removed afterwards; no run is stored. Counts per cloud
        and per node: ``{"local": {"add": 4, "change": 0, "destroy": 0, "nodes": {"web":
        {"add": 2, "change": 0, "destroy": 0}, …}}}`` (resources of no node under ``""``).
        """
        documents = compile_deployment(dep, clouds)
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"
        tokens = {
            f"{n}.{i}": "planned" for n, node in dep.nodes.items() for i in node.instance_ids()
        }
        scratch = self.home / "plans" / plan_id
        env = runner_env(self.home)

        def one(cloud: str) -> dict[str, Any]:
            folder = scratch / cloud
            write_atomic(folder / "main.tf.json", dumps(documents[cloud]))
            runner = TerraformRunner(self.terraform, folder, env)
            runner.init()
            variables = self._variables(plan_id, clouds.get(cloud).type, tokens)
            return plan_counts(runner.plan(variables).resource_changes, set(dep.nodes))

        try:
            with ThreadPoolExecutor(max_workers=max(1, len(documents))) as pool:
                return dict(zip(documents, pool.map(one, documents), strict=True))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- terminate --------------------------------------------------------------------

    def terminate(self, run_id: str) -> str:
        """Ready → Finalizing → Done; a run still on its way is cancelled, then destroyed.

        A run whose resources could not all be destroyed stays in Finalizing (or keeps its
        end state) with checkpoint ``destroy-failed``; terminating again retries.
        """
        run = self.store.get_run(run_id)
        if run is None:
            raise SlipstreamError(f"unknown run `{run_id}`")
        holder = self.lock(run_id, "destroy").holder()
        if holder.startswith("serve") and not RunLock.held_here(self._lock_path(run_id)):
            raise RunLocked(
                f"run `{run_id}` is served by `slipstream serve` {holder.partition(' ')[2]}:"
                " act through it (set SLIPSTREAM_URL and SLIPSTREAM_TOKEN)"
            )
        if run.state in _ON_THE_WAY:
            # A driver in another process sees the flag, cancels Terraform, destroys, lets go.
            self.coordinator.abort(run_id, "terminated by user", cancel=True)
        with self.lock(run_id, "destroy", wait_s=TERMINATE_WAIT_S):
            return self._terminate(run_id)

    def _terminate(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        if run.state in ("Ready", "Finalizing"):
            if run.state == "Ready":
                self.coordinator.set_state(run_id, "Finalizing", expect="Ready")
            self._destroy_all(run_id)
            if self._destroyed(run_id):
                self.coordinator.set_state(run_id, "Done", expect="Finalizing")
        elif run.state in ("Aborted", "Cancelled", "Done"):
            self._destroy_all(run_id)
        else:
            self.coordinator.abort(run_id, "terminated by user", cancel=True)
            self.coordinator.set_state(run_id, "Cancelled")
            self._destroy_all(run_id)
        final = self.store.get_run(run_id)
        assert final is not None
        return final.state

    def _destroyed(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        return run is not None and run.checkpoint == "destroyed"


def _retry_locked_result(step: Callable[[], T]) -> T:
    found: list[T] = []
    _retry_locked(lambda: found.append(step()))
    return found[0]


def _retry_locked(step: Callable[[], object]) -> None:
    """Run a Terraform step, waiting out a state lock left by a command still finishing
    (for example the apply of a deploying process that was killed)."""
    deadline = time.monotonic() + STATE_LOCK_WAIT_S
    while True:
        try:
            step()
            return
        except StateLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def plan_counts(changes: list[tuple[str, str]], nodes: set[str]) -> dict[str, Any]:
    """Planned (address, action) pairs counted per root and per node (a resource belongs
    to the node it is named after).

    >>> plan_counts([('terraform_data.web["1"]', "create"), ("aws_vpc.main", "replace")],
    ...             {"web"})["nodes"]
    {'': {'add': 1, 'change': 0, 'destroy': 1}, 'web': {'add': 1, 'change': 0, 'destroy': 0}}
    """
    effects: dict[str, tuple[str, ...]] = {"create": ("add",), "update": ("change",)}
    effects.update({"delete": ("destroy",), "replace": ("add", "destroy")})
    total = {"add": 0, "change": 0, "destroy": 0}
    per_node: dict[str, dict[str, int]] = {}
    for address, action in changes:
        name = address.split("[", 1)[0].rsplit(".", 1)[-1]
        counts = per_node.setdefault(name if name in nodes else "", dict.fromkeys(total, 0))
        for effect in effects.get(action, ()):
            counts[effect] += 1
            total[effect] += 1
    return {**total, "nodes": dict(sorted(per_node.items()))}


def masked_params(store: RunStore, run_id: str, secret_keys: set[str]) -> dict[str, str]:
    """A run's parameters, sorted, with the values of ``secret_keys`` shown as ``***``."""
    return {k: ("***" if k in secret_keys else v) for k, v in sorted(store.params(run_id).items())}


def run_summary(
    store: RunStore, run_id: str, secret_keys: set[str], events: int = SUMMARY_EVENTS
) -> dict[str, Any]:
    """A run as a JSON document: id, state, params (secrets masked), its last ``events``
    events, and ``earlier_events``, how many came before them (``slipstream logs`` has
    them all)."""
    run = store.get_run(run_id)
    if run is None:
        raise SlipstreamError(f"unknown run `{run_id}`")
    params = masked_params(store, run_id, secret_keys)
    last, earlier = store.last_events(run_id, events)
    return {
        "id": run.id,
        "deployment": run.deployment,
        "user": run.user,
        "state": run.state,
        "abort": run.abort_message,
        "params": params,
        "url": params.get("ss:url.service"),
        "events": [e.to_json() for e in last],
        "earlier_events": earlier,
    }
