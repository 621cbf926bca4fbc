"""The repositories the service tracks, their deliveries and the deployments they declare.

Rows of the run store (migration ``0003``): ``repositories`` (where to fetch, which branch,
which environment variables hold the webhook secret and the host API token), ``deliveries``
(one row per (repository, delivery id): a replayed delivery finds its row and starts
nothing), ``declared`` (which run serves each declaration now, and which new run is on its
way to replace it) and ``review_comments`` (the one comment per pull request, updated in
place).

Example:
    >>> from engine.store.runstore import RunStore
    >>> registry = Registry(RunStore.open("sqlite://"))
    >>> registry.add(Repository("infra", "https://git.example/infra.git", "main"))
    >>> registry.get("infra").branch
    'main'
    >>> registry.record_delivery("infra", "d-1", "push", "abc")
    True
    >>> registry.record_delivery("infra", "d-1", "push", "abc")  # a replay
    False
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from engine.store.database import Connection
from engine.store.runstore import RunStore

NAME_RE = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
HOSTS = ("none", "github", "gitlab", "gitea")
DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}


def default_name(url: str) -> str:
    """A repository's name from its URL.

    >>> default_name("https://github.com/acme/infra.git")
    'infra'
    """
    return url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")


@dataclass(frozen=True, slots=True)
class Repository:
    """A tracked repository. ``secret_env`` and ``token_env`` name environment variables of
    the service (the webhook secret, the host API token): secrets are never stored."""

    name: str
    url: str
    branch: str = "main"
    secret_env: str = ""
    host: str = "none"
    api_url: str = ""
    project: str = ""  # owner/name (GitHub, Gitea) or the project id or path (GitLab)
    token_env: str = ""
    created_at: float = field(default_factory=time.time)
    last_commit: str = ""
    last_error: str = ""

    def check(self) -> None:
        """ValueError saying what is wrong with the registration."""
        if not re.fullmatch(NAME_RE, self.name):
            raise ValueError(f"repository name `{self.name}`: letters, digits, `_.-`, ≤ 64")
        if self.host not in HOSTS:
            raise ValueError(f"host `{self.host}`: one of {', '.join(HOSTS)}")
        if not self.url or self.url.startswith("-"):
            raise ValueError("a repository needs a URL (and it cannot start with `-`)")
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", self.branch) or ".." in self.branch:
            raise ValueError(f"branch `{self.branch}` is not a branch name")
        for env in (self.secret_env, self.token_env):
            if env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", env):
                raise ValueError(f"`{env}` is not an environment variable name")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "branch": self.branch,
            "secret_env": self.secret_env,
            "host": self.host,
            "api_url": self.api_url or DEFAULT_API.get(self.host, ""),
            "project": self.project,
            "token_env": self.token_env,
            "created_at": self.created_at,
            "last_commit": self.last_commit,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery (or poll, or sync) as recorded."""

    repo: str
    delivery_id: str
    event: str
    commit: str
    received_at: float
    status: str  # queued, done, failed, ignored
    message: str
    run_ids: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "delivery": self.delivery_id,
            "event": self.event,
            "commit": self.commit,
            "status": self.status,
            "message": self.message,
            "runs": list(self.run_ids),
        }


@dataclass(frozen=True, slots=True)
class Declared:
    """Which run serves a declaration now, and which one is on its way to replace it."""

    repo: str
    name: str
    run_id: str
    digest: str
    commit: str
    pending_run: str
    pending_digest: str
    pending_commit: str
    prune: bool


_REPO_COLUMNS = (
    "name, url, branch, secret_env, host, api_url, project, token_env, created_at,"
    " last_commit, last_error"
)
_DELIVERY_COLUMNS = "repo, delivery_id, event, commit_sha, received_at, status, message, run_ids"
_DECLARED_COLUMNS = (
    "repo, name, run_id, digest, commit_sha, pending_run, pending_digest, pending_commit, prune"
)


class Registry:
    """Repositories, deliveries and declared deployments, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.db = store.database

    # -- repositories -----------------------------------------------------------------

    def add(self, repo: Repository) -> None:
        """Register ``repo``; ValueError when it is malformed or its name is taken."""
        repo.check()
        if self.get(repo.name) is not None:
            raise ValueError(f"repository `{repo.name}` is registered already")
        row: tuple[object, ...] = (repo.name, repo.url, repo.branch, repo.secret_env)
        row += (repo.host, repo.api_url, repo.project, repo.token_env, repo.created_at, "", "")
        self.store.write(
            lambda conn: conn.execute(
                f"INSERT INTO repositories ({_REPO_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row
            )
        )

    def get(self, name: str) -> Repository | None:
        row = self.db.fetch_one(f"SELECT {_REPO_COLUMNS} FROM repositories WHERE name = ?", (name,))
        return Repository(*row) if row else None

    def all(self) -> list[Repository]:
        rows = self.db.fetch_all(f"SELECT {_REPO_COLUMNS} FROM repositories ORDER BY name")
        return [Repository(*row) for row in rows]

    def remove(self, name: str) -> bool:
        def write(conn: Connection) -> bool:
            gone = conn.execute("DELETE FROM repositories WHERE name = ?", (name,)).rowcount
            for table in ("deliveries", "declared", "review_comments"):
                conn.execute(f"DELETE FROM {table} WHERE repo = ?", (name,))
            return bool(gone > 0)

        return self.store.write(write)

    def set_outcome(self, name: str, commit: str | None, error: str) -> None:
        """Remember the last commit reconciled (None: unchanged) and the last error."""
        if commit is None:
            self.store.write(
                lambda conn: conn.execute(
                    "UPDATE repositories SET last_error = ? WHERE name = ?", (error, name)
                )
            )
        else:
            self.store.write(
                lambda conn: conn.execute(
                    "UPDATE repositories SET last_commit = ?, last_error = ? WHERE name = ?",
                    (commit, error, name),
                )
            )

    # -- deliveries -------------------------------------------------------------------

    def record_delivery(self, repo: str, delivery_id: str, event: str, commit: str) -> bool:
        """Store a delivery, durably; False when (repo, delivery id) was recorded before."""
        return self.record_delivery_later(repo, delivery_id, event, commit).result()

    def record_delivery_later(
        self, repo: str, delivery_id: str, event: str, commit: str
    ) -> Future[bool]:
        """:meth:`record_delivery` without waiting: the future resolves once committed."""
        row = (repo, delivery_id, event, commit, time.time(), "queued", "", "[]")
        return self.store.write_later(
            lambda conn: (
                conn.execute(
                    f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (repo, delivery_id) DO NOTHING",
                    row,
                ).rowcount
                > 0
            )
        )

    def delivery(self, repo: str, delivery_id: str) -> Delivery | None:
        row = self.db.fetch_one(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE repo = ? AND delivery_id = ?",
            (repo, delivery_id),
        )
        return _delivery(row) if row else None

    def deliveries(self, repo: str, limit: int = 100) -> list[Delivery]:
        rows = self.db.fetch_all(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE repo = ?"
            " ORDER BY received_at DESC LIMIT ?",
            (repo, limit),
        )
        return [_delivery(row) for row in rows]

    def queued_pushes(self) -> list[tuple[str, str]]:
        """(repository, delivery id) of pushes recorded but not reconciled yet."""
        rows = self.db.fetch_all(
            "SELECT repo, delivery_id FROM deliveries WHERE status = 'queued' AND event = 'push'"
            " ORDER BY received_at"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def finish_delivery(
        self, repo: str, delivery_id: str, status: str, message: str, run_ids: list[str]
    ) -> None:
        self.finish_delivery_later(repo, delivery_id, status, message, run_ids).result()

    def finish_delivery_later(
        self,
        repo: str,
        delivery_id: str,
        status: str,
        message: str,
        run_ids: list[str] | None = None,
    ) -> Future[object]:
        args = (status, message, json.dumps(run_ids or []), repo, delivery_id)
        return self.store.write_later(
            lambda conn: conn.execute(
                "UPDATE deliveries SET status = ?, message = ?, run_ids = ?"
                " WHERE repo = ? AND delivery_id = ?",
                args,
            )
        )

    # -- declared deployments ---------------------------------------------------------

    def declared(self, repo: str) -> dict[str, Declared]:
        rows = self.db.fetch_all(
            f"SELECT {_DECLARED_COLUMNS} FROM declared WHERE repo = ? ORDER BY name", (repo,)
        )
        return {row[1]: _declared(row) for row in rows}

    def all_pending(self) -> list[Declared]:
        rows = self.db.fetch_all(
            f"SELECT {_DECLARED_COLUMNS} FROM declared WHERE pending_run != '' ORDER BY repo"
        )
        return [_declared(row) for row in rows]

    def set_pending(
        self, repo: str, name: str, run_id: str, digest: str, commit: str, prune: bool
    ) -> None:
        """A new run is on its way to serve ``name`` (the row is made when new)."""
        args = (repo, name, run_id, digest, commit, prune, time.time())
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO declared (repo, name, run_id, digest, commit_sha, pending_run,"
                " pending_digest, pending_commit, prune, updated_at)"
                " VALUES (?, ?, '', '', '', ?, ?, ?, ?, ?)"
                " ON CONFLICT (repo, name) DO UPDATE SET pending_run = excluded.pending_run,"
                " pending_digest = excluded.pending_digest, prune = excluded.prune,"
                " pending_commit = excluded.pending_commit, updated_at = excluded.updated_at",
                args,
            )
        )

    def set_prune(self, repo: str, name: str, prune: bool) -> None:
        self.store.write(
            lambda conn: conn.execute(
                "UPDATE declared SET prune = ? WHERE repo = ? AND name = ?", (prune, repo, name)
            )
        )

    def promote(self, repo: str, name: str, pending_run: str) -> bool:
        """The pending run serves the declaration now; False when it was replaced."""
        args = (time.time(), repo, name, pending_run)
        return self.store.write(
            lambda conn: (
                conn.execute(
                    "UPDATE declared SET run_id = pending_run, digest = pending_digest,"
                    " commit_sha = pending_commit, pending_run = '', pending_digest = '',"
                    " pending_commit = '', updated_at = ?"
                    " WHERE repo = ? AND name = ? AND pending_run = ?",
                    args,
                ).rowcount
                > 0
            )
        )

    def drop_pending(self, repo: str, name: str, pending_run: str) -> None:
        args = (time.time(), repo, name, pending_run)
        self.store.write(
            lambda conn: conn.execute(
                "UPDATE declared SET pending_run = '', pending_digest = '', pending_commit = '',"
                " updated_at = ? WHERE repo = ? AND name = ? AND pending_run = ?",
                args,
            )
        )

    def forget(self, repo: str, name: str) -> None:
        self.store.write(
            lambda conn: conn.execute(
                "DELETE FROM declared WHERE repo = ? AND name = ?", (repo, name)
            )
        )

    # -- pull request comments --------------------------------------------------------

    def comment_id(self, repo: str, number: int) -> str | None:
        row = self.db.fetch_one(
            "SELECT comment_id FROM review_comments WHERE repo = ? AND number = ?",
            (repo, number),
        )
        return None if row is None else str(row[0])

    def set_comment_id(self, repo: str, number: int, comment_id: str) -> None:
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO review_comments (repo, number, comment_id) VALUES (?, ?, ?)"
                " ON CONFLICT (repo, number) DO UPDATE SET comment_id = excluded.comment_id",
                (repo, number, comment_id),
            )
        )


def _declared(row: tuple[object, ...]) -> Declared:
    values = list(row)
    values[8] = bool(values[8])
    return Declared(*values)  # type: ignore[arg-type]


def _delivery(row: tuple[object, ...]) -> Delivery:
    values = list(row)
    values[7] = tuple(json.loads(str(values[7])))
    return Delivery(*values)  # type: ignore[arg-type]
