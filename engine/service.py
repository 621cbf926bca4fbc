"""The service facade: the one API every front door calls (CLI, REST, Git, Slack, notebooks).

Each call carries its :class:`~engine.access.Actor`; a refusal names the missing right
and changes nothing. Embedded (the CLI on its own), runs are driven by the calling process
(:meth:`Service.drive`); resident (``slipstream serve``), they are jobs of the service's
:class:`~engine.runs.jobs.JobRunner` and outlive any client. The HTTP server agents talk
to is injected by the composition root (the CLI), so the engine imports no web framework.

Example (not run as a doctest: it deploys)::

        service = Service(Path(".slipstream"), serve=None)
        run_id = service.deploy(service.local_actor(), "webapp")
        service.drive(run_id)
        # 'Ready'
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.access import Access, Actor
from engine.coordination.coordinator import Coordinator
from engine.coordination.hub import Hub
from engine.errors import AccessDenied, CloudError, Conflict, NotFound, RecipeInvalid
from engine.files import private_home
from engine.store.accounts import Accounts
from engine.store.runstore import Event, RunFilter, RunRecord, RunStore

# Recipes (PyYAML, jsonschema), the compiler, the run manager and Terraform are imported by
# the calls that need them: listing runs must not pay for deploying them (a CLI start).
if TYPE_CHECKING:
    from engine.inventory.inventory import Inventory
    from engine.inventory.model import CloudReport, Finding
    from engine.recipes.clouds import CloudsConfig
    from engine.recipes.model import Deployment
    from engine.recipes.overrides import Overrides
    from engine.runs.endpoints import Endpoints
    from engine.runs.jobs import Jobs
    from engine.runs.locks import RunLock
    from engine.runs.manager import RunManager
    from engine.runs.scalespec import ScaleAction

# Given the coordinator, starts serving agents; returns (their addresses, stop function).
Serve = Callable[[Coordinator], "tuple[Endpoints, Callable[[], None]]"]

OVER = ("Done", "Aborted", "Cancelled")
ON_THE_WAY = ("Initializing", "Provisioning", "Executing", "SendingReports")
#: Limits of an uploaded recipe bundle.
MAX_BUNDLE_FILES = 500
MAX_BUNDLE_FILE_BYTES = 1024 * 1024
MAX_BUNDLE_BYTES = 10 * 1024 * 1024


class Service:
    """Deploy, terminate and inspect runs of one service home, for actors with rights."""

    def __init__(
        self,
        home: Path,
        serve: Serve | None,
        clouds_path: Path | None = None,
        *,
        jobs: Jobs | None = None,
    ) -> None:
        self.home = home
        # What was made private in a home others could read (HomeUnusable when unsafe).
        self.repairs = private_home(home)
        url = os.environ.get("SLIPSTREAM_DATABASE_URL") or f"sqlite:///{home.resolve()}/runs.db"
        self.store = RunStore.open(url)
        self.hub = Hub()
        self.coordinator = Coordinator(self.store, self.hub)
        self.accounts = Accounts(self.store)
        self.access = Access(self.accounts)
        self.clouds_path = clouds_path
        self.jobs = jobs
        self._serve = serve
        self._stop: Callable[[], None] | None = None
        self._endpoints: Endpoints | None = None
        self._manager: RunManager | None = None
        self._serve_holds: dict[str, RunLock] = {}  # runs this (resident) process serves

    def clouds(self) -> CloudsConfig:
        from engine.recipes.clouds import load_home_clouds

        return load_home_clouds(self.home, self.clouds_path)

    def manager(self) -> RunManager:
        """The run manager; the agent server starts when a run is first driven."""
        if self._manager is None:
            from engine.runs.manager import RunManager
            from engine.terraform.binary import find_terraform

            self._manager = RunManager(
                self.home,
                self.store,
                self.hub,
                find_terraform(self.home),
                coordinator=self.coordinator,
                serve=self._start_server if self._serve is not None else None,
            )
        return self._manager

    def _start_server(self) -> Endpoints:
        if self._endpoints is None:
            assert self._serve is not None
            self._endpoints, self._stop = self._serve(self.coordinator)
        return self._endpoints

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    # -- who acts ---------------------------------------------------------------------

    def local_actor(self, name: str | None = None) -> Actor:
        """The person at the service's own host (the embedded CLI): they own its files, so
        they may do everything."""
        return Actor(name or os.environ.get("SLIPSTREAM_USER") or getpass.getuser(), admin=True)

    def authenticate(self, bearer: str) -> Actor:
        """The actor of an API token (NotAuthenticated says why one is refused)."""
        return self.access.authenticate(bearer)

    # -- runs -------------------------------------------------------------------------

    def deploy(
        self,
        actor: Actor,
        ref: str | Path,
        overrides: Overrides | None = None,
        root: Path | None = None,
        *,
        hold: bool = False,
        origin: Mapping[str, Any] | None = None,
        walk: bool = True,
    ) -> str:
        """Check and compile a deployment and store the run. Resident, it starts at once
        (``hold``: it is planned and waits for an approval); embedded, :meth:`drive` runs it.
        ``walk``: recipes are found anywhere below ``root`` (a checkout), else only in it.
        """
        from engine.recipes.loader import RecipeLoader
        from engine.recipes.single import load_run

        config = self.clouds()
        loader = RecipeLoader(root, config, walk=walk)
        dep = load_run(loader, ref, overrides, require_values=True)  # or one component
        self.check_quotas(actor.name, dep)  # before anything of the run exists
        run_id = self.manager().create(
            dep,
            config,
            actor.name,
            hold=hold,
            origin=dict(origin or {}),
            recipes=loader.files,
            images=self.built_images(dep),
        )
        if self.jobs is not None:
            self.manager().release(run_id)  # the job takes the lock again
            self.start(run_id)
        return run_id

    def check(
        self,
        actor: Actor,
        ref: str | Path,
        overrides: Overrides | None = None,
        root: Path | None = None,
    ) -> str:
        """Load and check a deployment with its overrides as :meth:`deploy` would, storing
        nothing: its name, or RecipeInvalid with every problem (a front door asks before it
        announces a run)."""
        from engine.recipes.loader import RecipeLoader
        from engine.recipes.single import load_run

        return load_run(RecipeLoader(root, self.clouds()), ref, overrides, True).name

    def deploy_bundle(
        self,
        actor: Actor,
        files: Mapping[str, str],
        deployment: str,
        overrides: Overrides | None = None,
        *,
        hold: bool = False,
    ) -> str:
        """Deploy from uploaded recipe files (relative path → YAML text); ``deployment`` is a
        name found among them (or in the shipped templates) or one of their paths."""
        folder = Path(tempfile.mkdtemp(prefix=".bundle-", dir=self.home))
        try:
            write_bundle(folder, files)
            ref = bundle_ref(folder, files, deployment)
            run_id = self.deploy(actor, ref, overrides, folder, hold=hold)
            shutil.move(str(folder), str(self.manager().run_dir(run_id) / "recipes"))
            return run_id
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def plan(
        self,
        actor: Actor,
        files: Mapping[str, str],
        deployment: str,
        overrides: Overrides | None = None,
    ) -> dict[str, Any]:
        """What deploying a bundle would do, per cloud and node (``terraform plan`` of each
        root; see :meth:`~engine.runs.manager.RunManager.preview`); no run is stored."""
        from engine.recipes.loader import RecipeLoader

        folder = Path(tempfile.mkdtemp(prefix=".bundle-", dir=self.home))
        try:
            write_bundle(folder, files)
            ref = bundle_ref(folder, files, deployment)
            config = self.clouds()
            dep = RecipeLoader(folder, config).deployment(ref, overrides, require_values=True)
            clouds = self.manager().preview(dep, config)
            return {"deployment": dep.name, "user": actor.name, "clouds": clouds}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def start(self, run_id: str) -> Future[Any] | None:
        """Resident: queue the job that drives ``run_id`` (None when embedded)."""
        if self.jobs is None:
            return None
        return self.jobs.submit(run_id, "drive", lambda: self.manager().drive(run_id))

    def drive(self, run_id: str) -> str:
        """Drive a run in this process to Ready or its end (the embedded mode)."""
        return self.manager().drive(run_id)

    def terminate(self, actor: Actor, run_id: str) -> str:
        """Ready → Finalizing → Done, or cancel a run on its way; resident, the destroy is a
        job and this returns the state the run is in now."""
        run = self.run_for(actor, run_id, "deploy")
        self.store.add_event(run_id, "terminate", f"terminate requested by {actor.name}")
        if self.jobs is None:
            return self.manager().terminate(run_id)
        if run.state in ON_THE_WAY:
            self.coordinator.abort(run_id, "terminated by user", cancel=True)
        self.jobs.submit(run_id, "terminate", lambda: self.manager().terminate(run_id))
        return self._state(run_id)

    def resume(self, actor: Actor, run_id: str) -> str:
        """Drive again a run whose driver died (resident: as a job)."""
        self.run_for(actor, run_id, "deploy")
        if self.jobs is None:
            return self.drive(run_id)
        self.start(run_id)
        return self._state(run_id)

    def scale(
        self, actor: Actor, run_id: str, changes: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> str:
        """Scale a scalable run in Ready: ``changes`` like ``web=+2`` / ``web=-1``, or
        ``remove`` like ``web.3`` (one node, one direction). A bad spec (UsageError) or a
        run that cannot scale now (Conflict naming its state) changes nothing. Embedded,
        the round runs here and its end state is returned; resident, it is a job.

        Example: ``service.scale(actor, "0f3a…", ["worker=+2"])`` → ``'Ready'``.
        """
        from engine.runs.scaling import Scaler

        action = self.check_scale(actor, run_id, changes, remove)
        scaler = Scaler(self.manager())
        if self.jobs is None:
            return scaler.scale(run_id, action, actor.name)
        self.jobs.submit(run_id, "scale", lambda: scaler.scale(run_id, action, actor.name))
        return self._state(run_id)

    def check_scale(
        self, actor: Actor, run_id: str, changes: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> ScaleAction:
        """What :meth:`scale` would do, refused as it would be, without doing it."""
        from engine.runs.scalespec import parse_scale
        from engine.runs.scaling import Scaler

        run = self.run_for(actor, run_id, "deploy")
        action = parse_scale(changes, remove)
        Scaler(self.manager()).check(run_id, action)
        if action.adds:
            self._check_scale_quota(run, action)
        return action

    def _check_scale_quota(self, run: RunRecord, action: ScaleAction) -> None:
        """QuotaExceeded when the instances ``action`` adds would take the run's owner over
        a quota on the clouds they go to (the same clouds the scale round picks)."""
        import json

        from engine.coordination.keys import highest_index
        from engine.runs.quotas import Amount, Quotas, size_amount

        body = json.loads(run.spec)["nodes"][action.node]
        each = size_amount(str(body.get("size", "")))
        top = highest_index(body)
        wanted: dict[str, Amount] = {}
        for i in range(top + 1, top + 1 + action.add):
            cloud = body["clouds"][(i - 1) % len(body["clouds"])]
            wanted[cloud] = wanted.get(cloud, Amount()) + each
        quotas = Quotas(self.store)
        for cloud, amount in sorted(wanted.items()):
            quotas.check(run.user, cloud, amount)

    def approve(self, actor: Actor, run_id: str) -> str:
        """Let a run held for approval go on (the actor needs ``approve`` on it, and must
        be among the run's ``approvers`` when its origin names some: a GitOps declaration)."""
        run = self.run_approvable(actor, run_id)
        if not self.store.set_approval(run_id, "approved", expect="pending"):
            raise Conflict(
                f"run `{run_id}` is not waiting for an approval ({run.approval or 'none'})"
            )
        self.store.add_event(run_id, "approval", f"approved by {actor.name}")
        self.start(run_id)
        return self._state(run_id)

    def reject(self, actor: Actor, run_id: str) -> str:
        """Refuse a held run: it is cancelled without being applied."""
        run = self.run_approvable(actor, run_id)
        if not self.store.set_approval(run_id, "rejected", expect="pending"):
            raise Conflict(
                f"run `{run_id}` is not waiting for an approval ({run.approval or 'none'})"
            )
        self.store.add_event(run_id, "approval", f"rejected by {actor.name}")
        self.coordinator.abort(run_id, f"rejected by {actor.name}", cancel=True)
        if self.jobs is not None:
            self.jobs.submit(run_id, "terminate", lambda: self.manager().terminate(run_id))
            return self._state(run_id)
        return self.manager().terminate(run_id)

    def run_approvable(self, actor: Actor, run_id: str) -> RunRecord:
        """The run, if ``actor`` may approve or reject it: the ``approve`` right, and a
        name among the ``approvers`` its origin lists, if any (admins: always)."""
        import json

        run = self.run_for(actor, run_id, "approve", own_is_enough=False)
        approvers = json.loads(run.origin or "{}").get("approvers") or []
        if approvers and not actor.admin and actor.name not in approvers:
            raise AccessDenied(actor.name, "approve", run.deployment)
        return run

    # -- reading ----------------------------------------------------------------------

    def run_for(
        self, actor: Actor, run_id: str, right: str = "view", own_is_enough: bool = True
    ) -> RunRecord:
        """The run, if ``actor`` may act on it with ``right`` (their own runs: any right but
        approve); NotFound or AccessDenied otherwise."""
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"unknown run `{run_id}`")
        if (own_is_enough and run.user == actor.name) or actor.may(right, run.deployment):
            return run
        raise AccessDenied(actor.name, right, run.deployment)

    def _state(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        assert run is not None
        return run.state

    def get_run(self, actor: Actor, run_id: str) -> dict[str, Any]:
        """The run's document (see :func:`engine.runs.manager.run_summary`)."""
        from engine.compile.runspec import sensitive_keys
        from engine.runs.manager import run_summary

        run = self.run_for(actor, run_id)
        doc = run_summary(self.store, run_id, sensitive_keys(self.coordinator.spec(run_id)))
        doc["approval"] = run.approval
        return doc

    def list_runs(self, actor: Actor, where: RunFilter | None = None) -> list[RunRecord]:
        """Runs the actor may see (theirs, and those of deployments they have a right on),
        newest first."""
        where = where or RunFilter()
        if actor.admin or any(scope == "*" for scope, _ in actor.rights):
            return self.store.list_runs(where=where)
        visible = {scope for scope, _ in actor.rights}
        found: list[RunRecord] = []
        before = where.before
        while len(found) < where.limit:
            page = self.store.list_runs(
                where=RunFilter(where.states, where.deployment, where.users, before, 200)
            )
            found.extend(r for r in page if r.user == actor.name or r.deployment in visible)
            if len(page) < 200:
                break
            before = page[-1].created_at
        return found[: where.limit]

    def events(self, actor: Actor, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """One page of a run's events after the id ``after``: page on with the last id
        until a page comes back shorter than ``limit``."""
        self.run_for(actor, run_id)
        return self.store.events(run_id, after, limit)

    def waiting(self, actor: Actor, run_id: str) -> dict[str, list[str]]:
        """Instances that have not voted in the run's current state yet → the keys each is
        blocked on right now (as this process serves them): who holds a run back."""
        run = self.run_for(actor, run_id)
        missing = self.coordinator.expected(run_id) - self.coordinator.voters(run_id, run.state)
        waits = self.hub.waits_of(run_id)
        return {name: waits.get(name, []) for name in sorted(missing)}

    def params(self, actor: Actor, run_id: str) -> dict[str, str]:
        from engine.compile.runspec import sensitive_keys
        from engine.runs.manager import masked_params

        self.run_for(actor, run_id)
        return masked_params(self.store, run_id, sensitive_keys(self.coordinator.spec(run_id)))

    # -- inventory and drift ------------------------------------------------------------

    def inventory(
        self, actor: Actor, cloud: str | None = None, *, drift: bool = False
    ) -> list[CloudReport]:
        """Per cloud, the instances labelled with this service against the runs' states:
        orphans, ghosts, and drift of ``local`` instances (``drift``: also Terraform's
        refresh of every live run's roots). Administrators only: it reads every run.

        Example: ``service.inventory(admin, "aws-eu")[0].findings`` lists the orphans and
        ghosts of cloud ``aws-eu`` (see :mod:`engine.inventory`).
        """
        from engine.inventory.drift import DriftChecker

        self._admin(actor)
        checker = DriftChecker(self.home, self.store, self.manager().terraform) if drift else None
        return self._inventory().take(cloud, checker)

    def delete_orphans(self, actor: Actor, orphans: list[Finding]) -> list[Finding]:
        """Remove orphans an inventory found (those of runs this service knows; the front
        door has asked for confirmation); each removal is an event of its run."""
        self._admin(actor)
        inventory = self._inventory()
        removed = []
        for cloud in sorted({f.cloud for f in orphans}):
            removed += inventory.delete(cloud, [f for f in orphans if f.cloud == cloud])
        for f in removed:
            if self.store.get_run(f.run_id) is not None:
                what = f"orphan {f.instance} ({f.id})" if f.id else f"orphan {f.instance}"
                message = f"{f.cloud}: {what} deleted by {actor.name}"
                self.store.add_event(f.run_id, "inventory", message, f.to_json())
        return removed

    def drift(self, actor: Actor, run_id: str) -> list[Finding]:
        """Check a run at rest for drift (Terraform's refresh of its roots; on ``local``,
        instances whose process died), record each finding as a ``drift`` event of the
        run, and return them. Conflict while the run is being changed.

        Example: ``service.drift(actor, "0f3a…")`` → ``[Finding(kind='drift', cloud='local',
        instance='web.1', message='its process died: …')]``.
        """
        from engine.inventory.drift import DriftChecker
        from engine.inventory.inventory import BUSY

        run = self.run_for(actor, run_id, "deploy")
        if run.state in BUSY:
            raise Conflict(f"run `{run_id}` is {run.state}: drift is checked on a run at rest")
        findings = DriftChecker(self.home, self.store, self.manager().terraform).check(run)
        for f in findings:
            who = " ".join(x for x in (f.instance, f.id and f"({f.id})") if x)
            message = f"{f.cloud}: {who}: {f.message}" if who else f"{f.cloud}: {f.message}"
            self.store.add_event(run_id, "drift", message, f.to_json())
        return findings

    def _inventory(self) -> Inventory:
        from engine.inventory.inventory import Inventory

        return Inventory(self.home, self.store, self.clouds())

    def _admin(self, actor: Actor) -> None:
        if not actor.admin:
            raise AccessDenied(actor.name, "admin", "*")

    # -- the resident service ---------------------------------------------------------

    def take_over(self) -> list[str]:
        """Serve every live run nobody else drives: hold its lock, point its agents here,
        and queue the job that takes it on from its checkpoint. Returns the runs taken."""
        from engine.runs.locks import RunLocked

        taken = []
        manager = self.manager()
        for run in self.store.list_runs(where=RunFilter(limit=100_000)):
            if run.state in OVER and run.checkpoint == "destroyed":
                continue
            lock = manager.lock(run.id, "serve")
            if lock.held_here(manager.run_dir(run.id) / "driver.lock"):
                continue
            try:
                lock.acquire()
            except RunLocked:
                continue  # another process drives it; the next sweep looks again
            self._serve_holds[run.id] = lock
            taken.append(run.id)
            if run.approval != "pending" or run.checkpoint != "planned":
                self.start(run.id)
        return taken

    # -- quotas and usage (see engine.runs.quotas, engine.runs.usage) -----------------

    def check_quotas(self, user: str, dep: Deployment) -> None:
        """QuotaExceeded when deploying ``dep`` would take ``user`` over a quota on one of
        its clouds; called before the run is created, so a refusal changes nothing."""
        from engine.runs.quotas import Amount, Quotas

        wanted: dict[str, Amount] = {}
        for node in dep.nodes.values():
            size = node.component.size
            for i in node.instance_ids():
                cloud = node.cloud_of(i)
                wanted[cloud] = wanted.get(cloud, Amount()) + Amount(1, size.cpu, size.ram_gb)
        quotas = Quotas(self.store)
        for cloud, amount in sorted(wanted.items()):
            quotas.check(user, cloud, amount)

    def set_quota(
        self,
        actor: Actor,
        user: str,
        cloud: str,
        instances: int | None = None,
        cpu: int | None = None,
        ram_gb: float | None = None,
    ) -> None:
        """Set ``user``'s limits on ``cloud`` (``*``: everyone's default); admins only.

        Example: ``service.set_quota(admin, "alice", "aws-eu", instances=20)``.
        """
        from engine.runs.quotas import Quotas

        self._admin(actor)
        if cloud not in self.clouds().names():
            raise NotFound(f"unknown cloud `{cloud}`")
        Quotas(self.store).set(user, cloud, instances, cpu, ram_gb)

    def quotas(self, actor: Actor, user: str | None = None) -> list[dict[str, Any]]:
        """Quota rows with what each user holds now; non-admins see their own only."""
        from engine.runs.quotas import EVERYONE, Quotas

        if not actor.admin:
            user = actor.name
        quotas = Quotas(self.store)
        rows = []
        for quota in quotas.list(user):
            who = user if quota.user == EVERYONE and user is not None else quota.user
            held = quotas.current(who, quota.cloud) if who != EVERYONE else None
            row = quota.to_json()
            row["current"] = (
                None
                if held is None
                else {
                    "instances": held.instances,
                    "cpu": held.cpu,
                    "ram_gb": held.ram_gb,
                }
            )
            rows.append(row)
        return rows

    def usage(
        self, actor: Actor, user: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Instance-hours per user, cloud and size (non-admins: their own only).

        Example: ``service.usage(admin, since=time.time() - 86400)`` → the last day's.
        """
        from engine.runs.usage import measure

        if not actor.admin:
            if user not in (None, actor.name):
                raise AccessDenied(actor.name, "admin", "*")
            user = actor.name
        return [row.to_json() for row in measure(self.store, user, since)]

    # -- the image factory (see engine.runs.imagefactory) --------------------------------

    def built_images(self, dep: Deployment) -> dict[tuple[str, str], str]:
        """(node, cloud) → the current image of the node's component there, if built."""
        from engine.store.images import ImageStore

        images = ImageStore(self.store)
        found = {}
        for node in dep.nodes.values():
            if node.component.virtual:
                continue
            for cloud in node.clouds:
                image = images.current(node.component.content_hash, cloud)
                if image is not None:
                    found[node.name, cloud] = image.image_id
        return found

    def build(
        self,
        actor: Actor,
        component: str,
        clouds: list[str],
        root: Path | None = None,
        on_run: Callable[[str, str], None] | None = None,
    ) -> list[Any]:
        """Build ``component``'s image on each of ``clouds`` in parallel (driven by this
        process); one :class:`~engine.runs.imagefactory.BuildOutcome` per cloud.

        Example: ``service.build(actor, "web", ["local", "aws-eu"])``.
        """
        from engine.errors import Mark, Problem
        from engine.recipes.loader import RecipeLoader
        from engine.runs.imagefactory import ImageFactory
        from engine.store.images import ImageStore

        config = self.clouds()
        loader = RecipeLoader(root, config)
        found = loader.component(component, Mark(component, 0, 0))
        if found is None or loader.problems:
            raise RecipeInvalid(loader.problems or [Problem(Mark(component, 0, 0), "not loaded")])
        from engine.runs.imagefactory import refusals
        from engine.runs.quotas import Amount, Quotas

        problems = refusals(found, clouds, config)
        if problems:
            raise CloudError("\n".join(f"build: {p}" for p in problems))
        images = ImageStore(self.store)
        machine = Amount(1, found.size.cpu, found.size.ram_gb)
        for cloud in clouds:  # a build machine counts like any instance of its builder
            if images.current(found.content_hash, cloud) is None:
                Quotas(self.store).check(actor.name, cloud, machine)
        factory = ImageFactory(self.manager(), images)
        return factory.build(found, clouds, config, actor.name, on_run)

    def images(
        self, actor: Actor, component: str | None = None, root: Path | None = None
    ) -> list[dict[str, Any]]:
        """Built images, newest first, each marked ``current`` when its hash is the one the
        component has now under ``root`` (None when the component is not found there)."""
        from engine.errors import Mark
        from engine.recipes.loader import RecipeLoader
        from engine.store.images import ImageStore

        loader = RecipeLoader(root, self.clouds())
        hashes: dict[str, str | None] = {}
        rows = []
        for image in ImageStore(self.store).list(component):
            if image.component not in hashes:
                found = loader.component(image.component, Mark(image.component, 0, 0))
                hashes[image.component] = found.content_hash if found is not None else None
            row = image.to_json()
            now = hashes[image.component]
            row["current"] = None if now is None else now == image.content_hash
            rows.append(row)
        return rows


def bundle_ref(folder: Path, files: Mapping[str, str], deployment: str) -> str | Path:
    """The deployment of a bundle written in ``folder``: one of its files, or a name looked
    up among them and then in the shipped templates; never any other path.

    >>> bundle_ref(Path("/b"), {"apps/web.yaml": "…"}, "apps/web.yaml")
    PosixPath('/b/apps/web.yaml')
    >>> bundle_ref(Path("/b"), {}, "/etc/passwd.yaml")
    Traceback (most recent call last):
    ...
    engine.errors.RecipeInvalid: /etc/passwd.yaml: not in the bundle, and not a deployment name
    """
    import re

    from engine.errors import Mark, Problem
    from engine.recipes.schema import NAME_RE

    if deployment in files:
        return folder / PurePosixPath(deployment)
    if not re.fullmatch(NAME_RE, deployment):
        problem = Problem(Mark(deployment, 0, 0), "not in the bundle, and not a deployment name")
        raise RecipeInvalid([problem])
    return deployment


def write_bundle(folder: Path, files: Mapping[str, str]) -> None:
    """Write uploaded recipe files under ``folder``; RecipeInvalid for a path that would
    leave it, a file that is not a recipe, or a bundle over its limits. Nothing outside
    ``folder`` is ever touched.

    >>> import tempfile
    >>> write_bundle(Path(tempfile.mkdtemp()), {"../x.yaml": "kind: component"})
    Traceback (most recent call last):
    ...
    engine.errors.RecipeInvalid: ../x.yaml: a bundle path must stay inside the bundle
    """
    from engine.errors import Mark, Problem

    problems: list[Problem] = []
    if len(files) > MAX_BUNDLE_FILES:
        problems.append(Problem(Mark("bundle", 0, 0), f"more than {MAX_BUNDLE_FILES} files"))
    total = 0
    for name, text in files.items():
        path = PurePosixPath(name)
        size = len(text.encode("utf-8", "surrogatepass"))
        total += size
        if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name:
            problems.append(Problem(Mark(name, 0, 0), "a bundle path must stay inside the bundle"))
        elif path.suffix not in (".yaml", ".yml") or any(p.startswith(".") for p in path.parts):
            problems.append(Problem(Mark(name, 0, 0), "only .yaml and .yml recipe files"))
        elif size > MAX_BUNDLE_FILE_BYTES:
            problems.append(Problem(Mark(name, 0, 0), "file is over 1 MiB"))
    if total > MAX_BUNDLE_BYTES:
        problems.append(Problem(Mark("bundle", 0, 0), "bundle is over 10 MiB"))
    if problems:
        raise RecipeInvalid(problems)
    for name, text in files.items():
        target = folder.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_text(text, encoding="utf-8")
