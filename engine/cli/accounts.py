"""``slipstream user``, ``token`` and ``right``: the service's accounts, administered on its
host (the person who owns the service home is its administrator).

Example:
    $ slipstream user add alice
    $ slipstream user link alice --slack T0123ABCD:U0456EFGH
    $ slipstream token create --user alice --expires 30d     # printed once
    $ slipstream right grant alice deploy webapp
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import JsonOpt, service_home
from engine.cli.output import print_json

if TYPE_CHECKING:
    from engine.service import Service

users = typer.Typer(help="Users of the service.", no_args_is_help=True, rich_markup_mode=None)
tokens = typer.Typer(
    help="API tokens (shown once, stored hashed).", no_args_is_help=True, rich_markup_mode=None
)
rights = typer.Typer(
    help="Rights on deployments: view, deploy, approve.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _service() -> Service:
    from engine.service import Service

    return Service(service_home(), None)


def _run(action: str, call: object) -> None:
    """Report a refused administration call as ``action: reason`` and exit 1."""
    from engine.errors import SlipstreamError

    try:
        assert callable(call)
        call()
    except (SlipstreamError, ValueError) as err:
        typer.echo(f"{action}: {err}", err=True)
        raise typer.Exit(1) from err


@users.command("add")
def user_add(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="may do everything")] = False,
    email: Annotated[str | None, typer.Option("--email")] = None,
) -> None:
    """Add a user."""
    service = _service()
    _run("user add", lambda: service.access.add_user(service.local_actor(), name, admin, email))
    typer.echo(f"user {name} added" + (" (admin)" if admin else ""))


@users.command("link")
def user_link(
    name: str,
    slack: Annotated[
        str,
        typer.Option(
            "--slack",
            help="TEAM:USER, the Slack workspace and member ids (profile → ⋮ → Copy member ID)",
        ),
    ],
) -> None:
    """Link a user to their Slack identity: `/slipstream` then acts as NAME."""
    import re

    if not re.fullmatch(r"[A-Z0-9]{2,32}:[A-Z0-9]{2,32}", slack):
        typer.echo(
            f"usage: --slack {slack}: expected TEAM:USER such as T0123ABCD:U0456EFGH", err=True
        )
        raise typer.Exit(2)
    service = _service()

    def link() -> None:
        service.local_actor().require_admin()
        if service.accounts.user(name) is None:
            from engine.errors import NotFound

            raise NotFound(f"unknown user `{name}`")
        service.accounts.link("slack", slack, name)

    _run("user link", link)
    typer.echo(f"Slack user {slack} acts as {name}")


@users.command("list")
def user_list(as_json: JsonOpt = False) -> None:
    """Every user."""
    found = _service().accounts.users()
    if as_json:
        print_json([{"name": u.name, "admin": u.admin, "email": u.email} for u in found])
        return
    for u in found:
        typer.echo(f"{u.name:<20} {'admin' if u.admin else 'member'}  {u.email or ''}")


@tokens.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="whose token")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="lifetime such as 30d or 12h (default: none)")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Make an API token; it is printed this once and stored only as a hash."""
    from engine.access import parse_duration

    service = _service()
    try:
        lifetime = parse_duration(expires) if expires else None
    except ValueError as err:
        typer.echo(f"usage: --expires {err}", err=True)
        raise typer.Exit(2) from err
    made: list[tuple[str, str]] = []
    _run(
        "token create",
        lambda: made.append(
            service.access.create_token(service.local_actor(), user, description, lifetime)
        ),
    )
    token_id, token = made[0]
    if as_json:
        print_json({"id": token_id, "user": user, "token": token})
    else:
        typer.echo(token)
        typer.echo(f"token {token_id} for {user}: shown once, store it now", err=True)


@tokens.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user")] = None, as_json: JsonOpt = False
) -> None:
    """Tokens (never their secrets), with their expiry and revocation."""
    found = _service().accounts.tokens(user)
    if as_json:
        print_json(
            [
                {
                    "id": t.id,
                    "user": t.user,
                    "description": t.description,
                    "created_at": t.created_at,
                    "expires_at": t.expires_at,
                    "revoked_at": t.revoked_at,
                }
                for t in found
            ]
        )
        return
    now = time.time()
    for t in found:
        if t.revoked_at is not None:
            status = "revoked"
        elif t.expires_at is not None and t.expires_at <= now:
            status = "expired"
        elif t.expires_at is not None:
            status = "expires " + time.strftime("%Y-%m-%d", time.localtime(t.expires_at))
        else:
            status = "active"
        typer.echo(f"{t.id}  {t.user:<16} {status:<18} {t.description}")


@tokens.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    service = _service()
    _run("token revoke", lambda: service.access.revoke_token(service.local_actor(), token_id))
    typer.echo(f"token {token_id} revoked")


@rights.command("grant")
def right_grant(user: str, right: str, deployment: str) -> None:
    """Give USER a RIGHT (view, deploy, approve) on DEPLOYMENT (or `*` for all)."""
    service = _service()
    _run(
        "right grant",
        lambda: service.access.grant(service.local_actor(), user, right, deployment),
    )
    typer.echo(f"{user} may {right} {deployment}")


@rights.command("revoke")
def right_revoke(user: str, right: str, deployment: str) -> None:
    """Take a right back."""
    service = _service()
    _run(
        "right revoke",
        lambda: service.access.revoke(service.local_actor(), user, right, deployment),
    )
    typer.echo(f"{user} may no longer {right} {deployment}")
