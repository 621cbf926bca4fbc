"""Accounts: users, their API tokens, their rights, and their identities on other services.

Tokens are stored hashed (SHA-256 of the secret) and found by their public id; a token is
``ss_<id>_<secret>``, shown once when made. Rights are (user, scope, right) rows: a scope
is a deployment name, or ``*`` for every deployment.

Example:
    >>> from engine.store.runstore import RunStore
    >>> accounts = Accounts(RunStore.open("sqlite://"))
    >>> accounts.add_user("alice", admin=False)
    >>> accounts.grant("alice", "webapp", "view")
    >>> accounts.rights_of("alice")
    {('webapp', 'view')}
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.store.runstore import RunStore


@dataclass(frozen=True, slots=True)
class User:
    """A person (or a service account, such as a repository's)."""

    name: str
    admin: bool
    email: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored: never its secret, only the secret's SHA-256."""

    id: str
    user: str
    secret_hash: str
    description: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


_TOKEN_COLUMNS = (
    "id, user_name, secret_hash, description, created_at, expires_at, revoked_at, last_used_at"
)


class Accounts:
    """Users, tokens, rights and linked identities, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.db = store.database

    # -- users ------------------------------------------------------------------------

    def add_user(self, name: str, admin: bool = False, email: str | None = None) -> None:
        """Store a new user; ValueError when the name is taken."""
        if self.user(name) is not None:
            raise ValueError(f"user `{name}` exists already")
        args = (name, admin, email, time.time())
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO users (name, admin, email, created_at) VALUES (?, ?, ?, ?)", args
            )
        )

    def user(self, name: str) -> User | None:
        row = self.db.fetch_one(
            "SELECT name, admin, email, created_at FROM users WHERE name = ?", (name,)
        )
        return User(row[0], bool(row[1]), row[2], row[3]) if row else None

    def users(self) -> list[User]:
        rows = self.db.fetch_all("SELECT name, admin, email, created_at FROM users ORDER BY name")
        return [User(r[0], bool(r[1]), r[2], r[3]) for r in rows]

    def set_admin(self, name: str, admin: bool) -> None:
        self.store.write(
            lambda conn: conn.execute("UPDATE users SET admin = ? WHERE name = ?", (admin, name))
        )

    # -- tokens -----------------------------------------------------------------------

    def add_token(
        self,
        token_id: str,
        user: str,
        secret_hash: str,
        description: str,
        expires_at: float | None,
    ) -> None:
        args = (token_id, user, secret_hash, description, time.time(), expires_at)
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO tokens (id, user_name, secret_hash, description, created_at,"
                " expires_at, revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                args,
            )
        )

    def token(self, token_id: str) -> TokenRecord | None:
        row = self.db.fetch_one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return TokenRecord(*row) if row else None

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        if user is None:
            rows = self.db.fetch_all(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at")
        else:
            rows = self.db.fetch_all(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE user_name = ? ORDER BY created_at",
                (user,),
            )
        return [TokenRecord(*row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token now; False when it does not exist or was revoked already."""
        args = (time.time(), token_id)
        return self.store.write(
            lambda conn: (
                conn.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", args
                ).rowcount
                > 0
            )
        )

    def touch_token(self, token_id: str) -> None:
        """Remember when a token was last used (best effort, never waited for)."""
        args = (time.time(), token_id)
        self.store.write_later(
            lambda conn: conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", args)
        )

    # -- rights -----------------------------------------------------------------------

    def grant(self, user: str, scope: str, right: str) -> None:
        args = (user, scope, right, time.time())
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO grants (user_name, scope, right_name, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_name, scope, right_name) DO NOTHING",
                args,
            )
        )

    def revoke(self, user: str, scope: str, right: str) -> bool:
        args = (user, scope, right)
        return self.store.write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM grants WHERE user_name = ? AND scope = ? AND right_name = ?", args
                ).rowcount
                > 0
            )
        )

    def rights_of(self, user: str) -> set[tuple[str, str]]:
        """(scope, right) pairs granted to ``user``."""
        rows = self.db.fetch_all(
            "SELECT scope, right_name FROM grants WHERE user_name = ?", (user,)
        )
        return {(r[0], r[1]) for r in rows}

    # -- identities on other services (Slack, Git hosts) ------------------------------

    def link(self, provider: str, external_id: str, user: str) -> None:
        args = (provider, external_id, user)
        self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO identities (provider, external_id, user_name) VALUES (?, ?, ?)"
                " ON CONFLICT (provider, external_id) DO UPDATE SET user_name = excluded.user_name",
                args,
            )
        )

    def linked_user(self, provider: str, external_id: str) -> str | None:
        row = self.db.fetch_one(
            "SELECT user_name FROM identities WHERE provider = ? AND external_id = ?",
            (provider, external_id),
        )
        return None if row is None else str(row[0])
