"""``slipstream quota set|show`` and ``slipstream usage``: limits per user and cloud, and
the instance-hours the runs used (SlipStream mailed these daily).

Example:
    $ slipstream quota set alice aws-eu instances=20 cpu=40 ram=80
    $ slipstream quota show alice
    $ slipstream usage --user alice --since 2026-12-01 --json
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import JsonOpt, service_home, user
from engine.cli.output import print_json

if TYPE_CHECKING:
    from engine.service import Service

quotas = typer.Typer(
    help="Quotas per user and cloud: instances, CPUs, GiB of RAM.", no_args_is_help=True
)

LIMITS = {"instances": int, "cpu": int, "ram": float}


def parse_limits(pairs: list[str]) -> dict[str, float | int | None]:
    """``instances=20 cpu=40 ram=80`` (``none`` lifts a limit) → keyword values.

    >>> parse_limits(["instances=20", "ram=7.5", "cpu=none"])
    {'instances': 20, 'cpu': None, 'ram': 7.5}
    """
    found: dict[str, float | int | None] = dict.fromkeys(LIMITS)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in LIMITS:
            raise ValueError(f"`{pair}`: expected instances=N, cpu=N or ram=GIB")
        if value == "none":
            continue
        try:
            found[key] = LIMITS[key](value)
        except ValueError:
            raise ValueError(f"`{pair}`: `{value}` is not a number") from None
        if found[key] < 0:  # type: ignore[operator]
            raise ValueError(f"`{pair}`: a quota is not negative")
    return found


def _service(command: str) -> Service:
    from engine.cli.images import embedded_only
    from engine.service import Service

    embedded_only(command)
    return Service(service_home(), None)


def _reader(command: str) -> Service | None:
    """The service for reading; None where no home exists yet (none is made)."""
    from engine.cli.images import embedded_only
    from engine.cli.inspection import reading_service

    embedded_only(command)
    return reading_service()


@quotas.command("set")
def quota_set(
    who: Annotated[str, typer.Argument(metavar="USER", help="a user, or * for everyone's default")],
    cloud: Annotated[str, typer.Argument(help="a configured cloud")],
    limits: Annotated[list[str], typer.Argument(help="instances=N cpu=N ram=GIB (none: no limit)")],
) -> None:
    """Set USER's limits on CLOUD (administrators only); limits not given are lifted."""
    from engine.errors import SlipstreamError

    try:
        values = parse_limits(limits)
    except ValueError as err:
        typer.echo(f"usage: quota set: {err}", err=True)
        raise typer.Exit(2) from err
    service = _service("quota set")
    try:
        service.set_quota(
            service.local_actor(user()),
            who,
            cloud,
            instances=None if values["instances"] is None else int(values["instances"]),
            cpu=None if values["cpu"] is None else int(values["cpu"]),
            ram_gb=values["ram"],
        )
    except SlipstreamError as err:
        typer.echo(f"quota set: {err}", err=True)
        raise typer.Exit(1) from err
    shown = " ".join(f"{k}={v:g}" for k, v in values.items() if v is not None) or "no limit"
    typer.echo(f"quota of {who} on {cloud}: {shown}")


@quotas.command("show")
def quota_show(
    who: Annotated[str | None, typer.Argument(metavar="[USER]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quotas (of USER, with everyone's defaults) and what each user holds now."""
    service = _reader("quota show")
    rows = service.quotas(service.local_actor(user()), who) if service is not None else []
    if as_json:
        print_json({"quotas": rows})
        return
    if not rows:
        typer.echo("no quotas")
        return
    typer.echo(f"{'USER':<16} {'CLOUD':<16} {'INSTANCES':>12} {'CPU':>10} {'RAM GiB':>12}")
    for row in rows:
        held = row["current"] or {}

        def cell(limit: float | None, key: str, held: dict[str, float] = held) -> str:
            now = held.get(key)
            text = "-" if limit is None else f"{limit:g}"
            return text if now is None else f"{now:g}/{text}"

        typer.echo(
            f"{row['user']:<16} {row['cloud']:<16} {cell(row['instances'], 'instances'):>12}"
            f" {cell(row['cpu'], 'cpu'):>10} {cell(row['ram_gb'], 'ram_gb'):>12}"
        )


def parse_since(text: str) -> float:
    """A date (``2026-12-01``, UTC) or ISO time as a Unix time.

    >>> parse_since("2026-12-01")
    1796083200.0
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def usage(
    who: Annotated[str | None, typer.Option("--user", help="one user's (default: all)")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="only hours after DATE (YYYY-MM-DD, UTC)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Instance-hours per user, cloud and size, from the runs' events."""
    try:
        since_at = parse_since(since) if since else None
    except ValueError as err:
        typer.echo(f"usage: --since {since}: expected a date such as 2026-12-01", err=True)
        raise typer.Exit(2) from err
    service = _reader("usage")
    rows = service.usage(service.local_actor(user()), who, since_at) if service else []
    if as_json:
        print_json({"since": since_at, "usage": rows})
        return
    if not rows:
        typer.echo("no usage")
        return
    typer.echo(f"{'USER':<16} {'CLOUD':<16} {'SIZE':<26} {'INSTANCES':>9} {'HOURS':>10}")
    for row in rows:
        typer.echo(
            f"{row['user']:<16} {row['cloud']:<16} {row['size']:<26} {row['instances']:>9}"
            f" {row['hours']:>10.3f}"
        )
