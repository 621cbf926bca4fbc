"""Reconcile a repository: make what runs match what its branch's ``slipstream.yaml`` says.

A push (or a poll, or ``slipstream repo sync``) fetches the tracked branch and reconciles to
its head, whatever commit the trigger named: two triggers close together both end on the
newest commit. Each declaration's *digest* covers the declaration itself and the content of
every recipe file its deployment uses (the deployment, its components, their parents up the
inheritance chain); a declaration whose digest changed gets a new run, held for approval
with ``apply: approve``. :meth:`GitOps.settle` then swaps: once the new run is Ready, the
old one is terminated; if the new one fails, the old one keeps running and the failure is
recorded. A declaration removed with ``prune: true`` is destroyed. Any problem in
``slipstream.yaml`` or any recipe it uses deploys nothing and touches no running run.

One lock per declared deployment (``gitops/<repo>/locks/<name>.lock``, naming its holder)
and one per repository serialise work across processes; every run records repository,
commit, declaration and trigger in its ``origin``.

Example (not run: it deploys)::

        gitops = GitOps(service)
        outcome = gitops.reconcile("infra", trigger="push d-1")
        outcome.started            # ['3f2a9c1e0b7d4a55']
        gitops.settle()            # later: the new run is Ready → the old one terminated
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.access import Actor
from engine.errors import Problem, RecipeInvalid, SlipstreamError
from engine.gitops.declarations import Declaration, load_declarations
from engine.gitops.git import Clone
from engine.gitops.registry import Declared, Registry, Repository
from engine.runs.locks import RunLock, RunLocked

if TYPE_CHECKING:
    from engine.service import Service

log = logging.getLogger(__name__)
LOCK_WAIT_S = 600.0
OVER = ("Done", "Aborted", "Cancelled")
# Told when a commit's outcome is known: (repository, commit, state, description), where
# state is pending, success or failure (a front door turns it into a commit status).
Notify = Callable[[Repository, str, str, str], None]


@dataclass
class Outcome:
    """What one reconcile did."""

    repo: str
    commit: str = ""
    started: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # undeclared without prune: left running
    problems: list[Problem] = field(default_factory=list)
    error: str = ""
    skipped: bool = False  # the head was reconciled before (``only_new``)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.error

    def describe(self) -> str:
        """One line for a commit status (GitHub keeps 140 characters).

        >>> from engine.errors import Mark
        >>> Outcome("r", problems=[Problem(Mark("apps/a.yaml", 3, 5), "bad")]).describe()
        'apps/a.yaml:3:5: bad'
        """
        if self.problems:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{self.problems[0]}{more}"
        if self.error:
            return self.error
        if self.skipped:
            return f"commit {self.commit[:12]} was reconciled already"
        parts = [f"{len(self.started)} started", f"{len(self.unchanged)} unchanged"]
        if self.destroyed:
            parts.append(f"{len(self.destroyed)} destroyed")
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "repository": self.repo,
            "commit": self.commit,
            "ok": self.ok,
            "started": self.started,
            "destroyed": self.destroyed,
            "unchanged": self.unchanged,
            "left_running": self.left,
            "problems": [p.to_json() for p in self.problems],
            "error": self.error,
            "skipped": self.skipped,
        }


class GitOps:
    """Repositories of one service: clones, reconciles, swaps runs, plans commits."""

    def __init__(self, service: Service, notify: Notify | None = None) -> None:
        self.service = service
        self.registry = Registry(service.store)
        self.notify = notify
        self._guard = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}

    # -- where things are -------------------------------------------------------------

    def folder(self, repo: str) -> Path:
        return self.service.home / "gitops" / repo

    def clone(self, repo: Repository) -> Clone:
        return Clone(self.folder(repo.name), repo.url)

    def actor(self, repo: str) -> Actor:
        """Who a repository's runs belong to (it may act on its own runs only)."""
        return Actor(f"repo:{repo}")

    def lock(self, repo: str, name: str) -> RunLock:
        """The lock of one declared deployment (its file says who holds it)."""
        return RunLock(self.folder(repo) / "locks" / f"{name}.lock", "reconcile", LOCK_WAIT_S)

    def repository(self, name: str) -> Repository:
        repo = self.registry.get(name)
        if repo is None:
            from engine.errors import NotFound

            raise NotFound(f"unknown repository `{name}`")
        return repo

    def _in_process(self, repo: str) -> threading.Lock:
        with self._guard:
            return self._repo_locks.setdefault(repo, threading.Lock())

    # -- reconcile --------------------------------------------------------------------

    def reconcile(self, name: str, trigger: str, *, only_new: bool = False) -> Outcome:
        """Fetch the tracked branch and reconcile to its head (see the module's doc).
        ``only_new``: do nothing when the head is the last commit reconciled (polling)."""
        repo = self.repository(name)
        outcome = Outcome(name)
        with (
            self._in_process(name),
            RunLock(self.folder(name) / "repo.lock", f"reconcile {trigger}", LOCK_WAIT_S),
        ):
            try:
                clone = self.clone(repo)
                outcome.commit = clone.fetch(repo.branch)
                if only_new and outcome.commit == self.repository(name).last_commit:
                    outcome.skipped = True
                    return outcome
                tree = clone.tree(outcome.commit)
                self._notify(repo, outcome.commit, "pending", "reconciling")
                self._reconcile(repo, tree, trigger, outcome)
            except RecipeInvalid as err:
                outcome.problems = err.problems
            except SlipstreamError as err:
                outcome.error = str(err)
            # The head is remembered even when it failed: polling retries a commit only
            # once it moves (a broken recipe is fixed by a new commit, not by waiting).
            error = "" if outcome.ok else outcome.describe()
            self.registry.set_outcome(name, outcome.commit or None, error)
            if outcome.commit:
                state = "failure" if not outcome.ok else "pending" if outcome.started else "success"
                self._notify(repo, outcome.commit, state, outcome.describe())
        return outcome

    def _reconcile(self, repo: Repository, tree: Path, trigger: str, outcome: Outcome) -> None:
        declarations = load_declarations(tree)
        digests: dict[str, str] = {}
        problems: list[Problem] = []
        for decl in declarations:
            try:
                digests[decl.name] = self.digest(decl, tree)
            except RecipeInvalid as err:
                problems.extend(err.problems)
        if problems:
            raise RecipeInvalid(problems)  # nothing deployed, nothing touched
        current = self.registry.declared(repo.name)
        for decl in declarations:
            row = current.get(decl.name)
            if row is not None:
                self.registry.set_prune(repo.name, decl.name, decl.prune)
            target = (row.pending_digest if row.pending_run else row.digest) if row else ""
            if target == digests[decl.name]:
                outcome.unchanged.append(decl.name)
                continue
            with self._declaration_lock(repo.name, decl.name):
                run_id = self._start(repo, decl, tree, outcome.commit, trigger, row)
            self.registry.set_pending(
                repo.name, decl.name, run_id, digests[decl.name], outcome.commit, decl.prune
            )
            outcome.started.append(run_id)
        declared = {d.name for d in declarations}
        for name, row in current.items():
            if name in declared:
                continue
            with self._declaration_lock(repo.name, name):
                if row.prune:
                    for run_id in (row.pending_run, row.run_id):
                        if run_id and self._end(repo.name, run_id, "pruned"):
                            outcome.destroyed.append(run_id)
                else:
                    outcome.left.extend(r for r in (row.run_id, row.pending_run) if r)
                self.registry.forget(repo.name, name)

    def _declaration_lock(self, repo: str, name: str) -> RunLock:
        lock = self.lock(repo, name)
        try:
            lock.acquire()
        except RunLocked as err:
            raise SlipstreamError(
                f"declared deployment `{name}` of `{repo}` is busy: held by {lock.holder()}"
            ) from err
        return lock

    def digest(self, decl: Declaration, tree: Path) -> str:
        """The declaration and every recipe file its deployment uses, hashed; RecipeInvalid
        with every problem when the deployment does not load."""
        from engine.recipes.loader import RecipeLoader

        loader = RecipeLoader(tree, self.service.clouds(), walk=True)
        loader.deployment(decl.ref(tree), decl.overrides(), require_values=True)
        digest = hashlib.sha256(decl.fingerprint().encode())
        for name, path in sorted(loader.files.items()):
            digest.update(f"\0{name}\0".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def _start(
        self,
        repo: Repository,
        decl: Declaration,
        tree: Path,
        commit: str,
        trigger: str,
        row: Declared | None,
    ) -> str:
        if row is not None and row.pending_run:
            self._end(repo.name, row.pending_run, f"superseded by commit {commit[:12]}")
            self.registry.drop_pending(repo.name, decl.name, row.pending_run)
        origin = {
            "repository": repo.name,
            "url": repo.url,
            "branch": repo.branch,
            "commit": commit,
            "declaration": decl.name,
            "trigger": trigger,
            "apply": decl.apply,
            "approvers": list(decl.approvers),
        }
        run_id = self.service.deploy(
            self.actor(repo.name),
            decl.ref(tree),
            decl.overrides(),
            tree,
            hold=decl.apply == "approve",
            origin=origin,
            walk=True,
        )
        replaces = f", to replace run {row.run_id}" if row is not None and row.run_id else ""
        self.service.store.add_event(
            run_id,
            "gitops",
            f"declared `{decl.name}` of {repo.name} at {commit[:12]} ({trigger}){replaces}",
            origin,
        )
        return run_id

    def _end(self, repo: str, run_id: str, why: str) -> bool:
        """Terminate a run of the repository's; False when it is over already."""
        run = self.service.store.get_run(run_id)
        if run is None or (run.state in OVER and run.checkpoint == "destroyed"):
            return False
        self.service.store.add_event(run_id, "gitops", f"terminated: {why}")
        try:
            self.service.terminate(self.actor(repo), run_id)
        except SlipstreamError as err:
            log.warning("terminating run %s: %s", run_id, err)
            return False
        return True

    # -- swap -------------------------------------------------------------------------

    def settle(self) -> list[str]:
        """Swap every pending run that is Ready (the old one is terminated) and give up on
        those that failed (the old one keeps running); returns what was done, one line each."""
        done: list[str] = []
        for row in self.registry.all_pending():
            run = self.service.store.get_run(row.pending_run)
            if run is None:
                self.registry.drop_pending(row.repo, row.name, row.pending_run)
                continue
            ready = run.state == "Ready" or (run.state == "Done" and not run.abort_message)
            if ready and self.registry.promote(row.repo, row.name, row.pending_run):
                if row.run_id:
                    self._end(row.repo, row.run_id, f"replaced by run {row.pending_run}")
                line = f"{row.repo}/{row.name}: run {row.pending_run} serves it"
                done.append(line + (f", run {row.run_id} terminated" if row.run_id else ""))
                self._notify_by_name(row.repo, row.pending_commit, "success", line)
            elif run.state in OVER and not ready:
                self.registry.drop_pending(row.repo, row.name, row.pending_run)
                why = run.abort_message or run.state
                kept = f"; run {row.run_id} keeps running" if row.run_id else ""
                line = f"{row.name}: run {row.pending_run} {run.state}: {why}{kept}"
                self.registry.set_outcome(row.repo, None, line)
                done.append(f"{row.repo}/{line}")
                self._notify_by_name(row.repo, row.pending_commit, "failure", line)
        return done

    def _notify(self, repo: Repository, commit: str, state: str, description: str) -> None:
        if self.notify is None:
            return
        try:
            self.notify(repo, commit, state, description)
        except Exception:  # a host that cannot be told must not stop reconciling
            log.exception("reporting %s of %s to its host failed", commit[:12], repo.name)

    def _notify_by_name(self, repo: str, commit: str, state: str, description: str) -> None:
        found = self.registry.get(repo)
        if found is not None and commit:
            self._notify(found, commit, state, description)

    # -- status -----------------------------------------------------------------------

    def status(self, name: str) -> dict[str, object]:
        """The repository with what it declares and the runs serving it."""
        repo = self.repository(name)
        declared = self.registry.declared(name)
        doc = repo.to_json()
        doc["deployments"] = {
            n: {
                "run": d.run_id,
                "commit": d.commit,
                "pending_run": d.pending_run,
                "pending_commit": d.pending_commit,
                "prune": d.prune,
            }
            for n, d in declared.items()
        }
        result: dict[str, object] = json.loads(json.dumps(doc))
        return result
