"""Who may do what: actors, API tokens and rights (DESIGN sections 8 and 11).

A token is ``ss_<id>_<secret>``: the id finds it, the secret's SHA-256 (compared in
constant time) proves it, and it may expire or be revoked. An actor is a user with the
rights they hold: admins may do everything; a member acts on their own runs and on the runs
of deployments they have a right on: ``view`` (read), ``deploy`` (start, terminate, resume;
implies view) and ``approve`` (let a held run go on; implies view). A scope is a deployment
name, or ``*`` for all.

Example:
    >>> alice = Actor("alice", rights=frozenset({("webapp", "deploy")}))
    >>> alice.may("view", "webapp"), alice.may("approve", "webapp"), alice.may("view", "db")
    (True, False, False)
    >>> token_id, token = mint_token()
    >>> parse_token(token)[0] == token_id
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field

from engine.errors import AccessDenied, Conflict, NotAuthenticated, NotFound
from engine.store.accounts import Accounts, TokenRecord

RIGHTS = ("view", "deploy", "approve")
USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^ss_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class Actor:
    """The user a call acts for, with the rights they hold."""

    name: str
    admin: bool = False
    rights: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def may(self, right: str, deployment: str) -> bool:
        """Whether this actor holds ``right`` on ``deployment`` (view comes with the others)."""
        if self.admin:
            return True
        implied = RIGHTS if right == "view" else (right,)
        return any((scope, held) in self.rights for scope in (deployment, "*") for held in implied)

    def check(self, right: str, deployment: str) -> None:
        """Raise :class:`AccessDenied` naming the missing right."""
        if not self.may(right, deployment):
            raise AccessDenied(self.name, right, deployment)

    def owns_or_may(self, right: str, owner: str, deployment: str) -> bool:
        return owner == self.name or self.may(right, deployment)

    def require_admin(self) -> None:
        if not self.admin:
            raise AccessDenied(self.name, "admin", "*")


def mint_token() -> tuple[str, str]:
    """(public id, the whole token) for a new API token; only its hash is ever stored."""
    token_id = secrets.token_hex(6)
    return token_id, f"ss_{token_id}_{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m`` or ``3600s``; ValueError otherwise.

    >>> parse_duration("30d")
    2592000.0
    """
    match = re.fullmatch(r"([0-9]{1,6})([smhd])", text.strip())
    if not match:
        raise ValueError(f"`{text}` is not a duration like 30d, 12h, 90m or 3600s")
    return float(int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])


class Access:
    """Users, tokens and rights of one service, and authentication of API requests."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def actor(self, name: str) -> Actor:
        """The actor for a stored user; NotAuthenticated when there is no such user."""
        user = self.accounts.user(name)
        if user is None:
            raise NotAuthenticated(f"unknown user `{name}`")
        return Actor(user.name, user.admin, frozenset(self.accounts.rights_of(user.name)))

    def authenticate(self, bearer: str) -> Actor:
        """The actor of an API token; NotAuthenticated saying why it is refused."""
        parsed = parse_token(bearer)
        if parsed is None:
            raise NotAuthenticated("malformed token")
        token_id, secret = parsed
        record = self.accounts.token(token_id)
        if record is None or not hmac.compare_digest(record.secret_hash, secret_hash(secret)):
            raise NotAuthenticated("unknown token")
        if record.revoked_at is not None:
            raise NotAuthenticated(f"token {token_id} was revoked")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise NotAuthenticated(f"token {token_id} has expired")
        self.accounts.touch_token(token_id)
        return self.actor(record.user)

    # -- administration (the CLI on the service's host, or an admin over the API) -----

    def add_user(self, by: Actor, name: str, admin: bool = False, email: str | None = None) -> None:
        by.require_admin()
        if not USER_NAME.match(name):
            raise ValueError(
                f"user name `{name}`: expected lower-case letters, digits, `.`, `_` or `-`, "
                "starting with a letter, at most 64 characters"
            )
        try:
            self.accounts.add_user(name, admin, email)
        except ValueError as err:
            raise Conflict(str(err)) from None

    def create_token(
        self, by: Actor, user: str, description: str = "", expires_in_s: float | None = None
    ) -> tuple[str, str]:
        """(id, token): the token is shown this once. Members make tokens for themselves."""
        if user != by.name:
            by.require_admin()
        if self.accounts.user(user) is None:
            raise NotFound(f"unknown user `{user}`")
        token_id, token = mint_token()
        _, secret = parse_token(token) or ("", "")
        expires = None if expires_in_s is None else time.time() + expires_in_s
        self.accounts.add_token(token_id, user, secret_hash(secret), description, expires)
        return token_id, token

    def tokens(self, by: Actor, user: str | None = None) -> list[TokenRecord]:
        if user != by.name:
            by.require_admin()
        return self.accounts.tokens(user)

    def revoke_token(self, by: Actor, token_id: str) -> None:
        record = self.accounts.token(token_id)
        if record is None or (record.user != by.name and not by.admin):
            raise NotFound(f"unknown token `{token_id}`")
        if not self.accounts.revoke_token(token_id):
            raise Conflict(f"token {token_id} was revoked already")

    def grant(self, by: Actor, user: str, right: str, scope: str) -> None:
        by.require_admin()
        if right not in RIGHTS:
            raise ValueError(f"unknown right `{right}` (rights: {', '.join(RIGHTS)})")
        if self.accounts.user(user) is None:
            raise NotFound(f"unknown user `{user}`")
        self.accounts.grant(user, scope, right)

    def revoke(self, by: Actor, user: str, right: str, scope: str) -> None:
        by.require_admin()
        if not self.accounts.revoke(user, scope, right):
            raise NotFound(f"{user} holds no `{right}` right on `{scope}`")
