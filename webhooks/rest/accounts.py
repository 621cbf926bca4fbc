"""Users, tokens and rights: admins manage users and rights; everyone manages their own
tokens (admins anyone's). A token's secret is in the answer that makes it, and nowhere else.

Example:
    POST /api/v1/tokens {"description": "ci", "expires": "30d"}
    → 201 {"id": "a457e598ecfb", "token": "ss_a457e598ecfb_…", "expires_at": …}
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, HTTPTokenAuth
from flask.typing import ResponseReturnValue

import webhooks.rest.schemas as s
from engine.access import Actor, parse_duration
from engine.errors import NotFound
from engine.service import Service
from engine.store.accounts import TokenRecord
from webhooks.rest.auth import current_actor


def grants(pairs: set[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"right": right, "deployment": scope} for scope, right in sorted(pairs)]


def token_doc(record: TokenRecord) -> dict[str, Any]:
    """A token as shown: never its secret, nor the secret's hash."""
    return {
        "id": record.id,
        "user": record.user,
        "description": record.description,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
    }


def accounts_blueprint(service: Service, auth: HTTPTokenAuth) -> APIBlueprint:
    """The routes of ``/api/v1/whoami``, ``/users`` and ``/tokens``."""
    bp = APIBlueprint("accounts", __name__, url_prefix="/api/v1", tag="Accounts")
    access, accounts = service.access, service.accounts

    def actor() -> Actor:
        return current_actor(auth)

    def user_doc(name: str) -> dict[str, Any]:
        user = accounts.user(name)
        if user is None:
            raise NotFound(f"unknown user `{name}`")
        return {
            "name": user.name,
            "admin": user.admin,
            "email": user.email,
            "created_at": user.created_at,
            "rights": grants(accounts.rights_of(user.name)),
        }

    @bp.get("/whoami")
    @bp.auth_required(auth)
    @bp.output(s.Whoami)
    def whoami() -> dict[str, Any]:
        """Who this token acts for, and their rights"""
        me = actor()
        return {"name": me.name, "admin": me.admin, "rights": grants(set(me.rights))}

    @bp.get("/users")
    @bp.auth_required(auth)
    @bp.output(s.UserList)
    @bp.doc(responses=[403])
    def list_users() -> dict[str, Any]:
        """Every user, with their rights (admins only)"""
        actor().require_admin()
        return {"users": [user_doc(u.name) for u in accounts.users()]}

    @bp.post("/users")
    @bp.auth_required(auth)
    @bp.input(s.UserCreate, arg_name="body")
    @bp.output(s.User, status_code=201)
    @bp.doc(responses=[403, 409])
    def add_user(body: dict[str, Any]) -> ResponseReturnValue:
        """Add a user (admins only)"""
        access.add_user(actor(), body["name"], body["admin"], body["email"])
        return user_doc(body["name"]), 201

    @bp.post("/users/<name>/rights")
    @bp.auth_required(auth)
    @bp.input(s.Grant, arg_name="body")
    @bp.output(s.GrantDone, status_code=201)
    @bp.doc(responses=[403])
    def grant(name: str, body: dict[str, Any]) -> ResponseReturnValue:
        """Give a user a right on a deployment, or on every one (`*`) (admins only)"""
        access.grant(actor(), name, body["right"], body["deployment"])
        return {"user": name, **body}, 201

    @bp.delete("/users/<name>/rights")
    @bp.auth_required(auth)
    @bp.input(s.Grant, location="query", arg_name="query")
    @bp.output({}, status_code=204)
    @bp.doc(responses=[403])
    def revoke(name: str, query: dict[str, Any]) -> ResponseReturnValue:
        """Take a right back (admins only)"""
        access.revoke(actor(), name, query["right"], query["deployment"])
        return "", 204

    @bp.get("/tokens")
    @bp.auth_required(auth)
    @bp.input(s.TokenQuery, location="query", arg_name="query")
    @bp.output(s.TokenList)
    @bp.doc(responses=[403])
    def list_tokens(query: dict[str, Any]) -> dict[str, Any]:
        """Tokens: yours, or anyone's for admins (never their secrets)"""
        me = actor()
        whose = query.get("user") or (None if me.admin else me.name)
        return {"tokens": [token_doc(t) for t in access.tokens(me, whose)]}

    @bp.post("/tokens")
    @bp.auth_required(auth)
    @bp.input(s.TokenCreate, arg_name="body")
    @bp.output(s.TokenMade, status_code=201, description="The token: shown this once")
    @bp.doc(responses=[403, 404])
    def create_token(body: dict[str, Any]) -> ResponseReturnValue:
        """Make a token, for yourself (or anyone, for admins)"""
        me = actor()
        lifetime = parse_duration(body["expires"]) if body["expires"] else None
        token_id, token = access.create_token(
            me, body.get("user") or me.name, body["description"], lifetime
        )
        record = accounts.token(token_id)
        assert record is not None
        return {**token_doc(record), "token": token}, 201

    @bp.delete("/tokens/<token_id>")
    @bp.auth_required(auth)
    @bp.output({}, status_code=204)
    @bp.doc(responses=[409])
    def revoke_token(token_id: str) -> ResponseReturnValue:
        """Revoke a token at once (yours, or anyone's for admins)"""
        access.revoke_token(actor(), token_id)
        return "", 204

    return bp
