"""``slipstream inventory``: what the clouds hold against what the runs' states say.

Per cloud: the instances labelled with this service, orphans (in the cloud, in no run's
state), ghosts (in a run's state, gone from the cloud) and drift (on ``local``, an
instance whose process died; with ``--drift``, Terraform's refresh of every live run's
roots). ``--delete-orphans`` removes orphans of this service's runs once confirmed
(``--yes`` confirms for CI). Exit 0 whatever is found; 1 when a cloud could not be asked.

Example:
    $ slipstream inventory --cloud aws-eu
    $ slipstream inventory --json --delete-orphans --yes
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import CloudsOpt, JsonOpt, service_home, user
from engine.cli.output import print_json

if TYPE_CHECKING:
    from engine.access import Actor
    from engine.inventory.model import CloudReport, Finding
    from engine.service import Service


def inventory(
    cloud: Annotated[str | None, typer.Option("--cloud", help="only this cloud")] = None,
    as_json: JsonOpt = False,
    delete_orphans: Annotated[
        bool, typer.Option("--delete-orphans", help="remove the orphans found, once confirmed")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm --delete-orphans (for CI)")] = False,
    drift: Annotated[
        bool, typer.Option("--drift", help="also refresh every live run's roots (one plan each)")
    ] = False,
    clouds: CloudsOpt = None,
) -> None:
    """Instances labelled with this service in each cloud, against the runs' states."""
    from engine.errors import SlipstreamError
    from engine.service import Service

    service = Service(service_home(), None, clouds)
    actor = service.local_actor(user())
    try:
        reports = service.inventory(actor, cloud, drift=drift)
    except SlipstreamError as err:
        typer.echo(f"inventory: {err}", err=True)
        raise typer.Exit(1) from err
    deleted: list[Finding] = []
    if delete_orphans:
        deleted = _delete(service, actor, reports, yes, quiet=as_json)
    if as_json:
        print_json(
            {
                "clouds": [r.to_json() for r in reports],
                "deleted": [f.to_json() for f in deleted],
            }
        )
    else:
        for report in reports:
            typer.echo(render(report))
        typer.echo(summary(reports))
    if any(r.failed for r in reports):
        raise typer.Exit(1)  # a cloud that should have answered did not


def render(report: CloudReport) -> str:
    """One cloud's report as terminal lines.

    Example:
        >>> from engine.inventory.model import CloudReport
        >>> print(render(CloudReport("rack", "ssh", False, (), 3, (), "not supported yet")))
        rack (ssh): not supported yet; 3 instance(s) in runs' states
    """
    head = f"{report.cloud} ({report.type}): "
    if not report.listed:
        lines = [f"{head}{report.note}; {report.in_states} instance(s) in runs' states"]
    else:
        live = sum(1 for i in report.instances if i.live)
        lines = [
            f"{head}{live} live instance(s) labelled with this service, "
            f"{report.in_states} in runs' states"
            + ("" if report.findings else "; nothing to report")
        ]
    lines += [f"  {finding}" for finding in report.findings]
    return "\n".join(lines)


def summary(reports: list[CloudReport]) -> str:
    """The count of each kind of finding, over every cloud.

    Example:
        >>> summary([])
        '0 orphan(s), 0 ghost(s), 0 drift, 0 unchecked'
    """
    kinds = [f.kind for r in reports for f in r.findings]
    return (
        f"{kinds.count('orphan')} orphan(s), {kinds.count('ghost')} ghost(s), "
        f"{kinds.count('drift')} drift, {kinds.count('unchecked')} unchecked"
    )


def _delete(
    service: Service, actor: Actor, reports: list[CloudReport], yes: bool, quiet: bool
) -> list[Finding]:
    orphans = [f for r in reports for f in r.findings if f.kind == "orphan"]
    chosen = [f for f in orphans if f.known_run]
    for skipped in (f for f in orphans if not f.known_run):
        typer.echo(f"not deleting {skipped.id or skipped.instance}: {skipped.message}", err=True)
    if not chosen:
        typer.echo("no orphan to delete", err=True)
        return []
    typer.echo(f"{len(chosen)} orphan(s) to delete:", err=True)
    for finding in chosen:
        typer.echo(f"  {finding}", err=True)
    if not yes and not typer.confirm("Delete them?", default=False, err=True):
        typer.echo("nothing deleted", err=True)
        return []
    deleted = service.delete_orphans(actor, chosen)
    if not quiet:
        for finding in deleted:
            typer.echo(f"deleted {finding.cloud} {finding.id or finding.instance}", err=True)
    return deleted


__all__ = ["inventory", "render", "summary"]
