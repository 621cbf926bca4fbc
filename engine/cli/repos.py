"""``slipstream repo``: the repositories whose ``slipstream.yaml`` the service keeps deployed.

Administered on the service's host, like users. ``repo sync`` reconciles now, in this
process: new runs are driven here to Ready, then the runs they replace are terminated.
With ``slipstream serve`` running, prefer its webhooks or ``--poll``.

Example:
    $ export INFRA_HOOK_SECRET=…                     # in the environment of `slipstream serve`
    $ slipstream repo add https://github.com/acme/infra.git --branch main \\
          --secret-env INFRA_HOOK_SECRET --host github --token-env GITHUB_TOKEN
    $ slipstream repo list
    $ slipstream repo sync infra
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import JsonOpt, service_home
from engine.cli.output import print_json

if TYPE_CHECKING:
    from engine.gitops.reconcile import GitOps

repos = typer.Typer(help="Git repositories kept deployed (GitOps).", no_args_is_help=True)


def _gitops() -> GitOps:
    from engine.gitops.reconcile import GitOps
    from engine.service import Service

    return GitOps(Service(service_home(), None))


@repos.command("add")
def repo_add(
    url: str,
    branch: Annotated[str, typer.Option("--branch", help="the branch to keep deployed")] = "main",
    secret_env: Annotated[
        str, typer.Option("--secret-env", help="variable holding the webhook secret")
    ] = "",
    name: Annotated[str | None, typer.Option("--name", help="default: from the URL")] = None,
    host: Annotated[
        str, typer.Option("--host", help="where statuses go: none, github, gitlab, gitea")
    ] = "none",
    api_url: Annotated[str, typer.Option("--api-url", help="the host's REST API base")] = "",
    project: Annotated[
        str, typer.Option("--project", help="owner/name, or GitLab's project id")
    ] = "",
    token_env: Annotated[
        str, typer.Option("--token-env", help="variable holding the host API token")
    ] = "",
) -> None:
    """Register a repository (its deliveries go to /hooks/NAME)."""
    from engine.gitops.registry import Repository, default_name

    gitops = _gitops()
    repo = Repository(
        name or default_name(url), url, branch, secret_env, host, api_url, project, token_env
    )
    try:
        gitops.registry.add(repo)
    except ValueError as err:
        typer.echo(f"repo add: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"repository {repo.name} added: point its webhook at /hooks/{repo.name}")


@repos.command("list")
def repo_list(as_json: JsonOpt = False) -> None:
    """Registered repositories."""
    found = _gitops().registry.all()
    if as_json:
        print_json([r.to_json() for r in found])
        return
    for r in found:
        last = r.last_commit[:12] or "-"
        error = f"  error: {r.last_error}" if r.last_error else ""
        typer.echo(f"{r.name}\t{r.url}\t{r.branch}\t{last}{error}")


@repos.command("remove")
def repo_remove(name: str) -> None:
    """Forget a repository (its runs keep running; destroy them with `slipstream destroy`)."""
    import shutil

    gitops = _gitops()
    if not gitops.registry.remove(name):
        typer.echo(f"repo remove: unknown repository `{name}`", err=True)
        raise typer.Exit(1)
    shutil.rmtree(gitops.folder(name), ignore_errors=True)
    typer.echo(f"repository {name} removed")


@repos.command("sync")
def repo_sync(name: str, as_json: JsonOpt = False) -> None:
    """Fetch and reconcile now; new runs are driven here, then swapped in."""
    from engine.cli.runs import driving_service
    from engine.errors import SlipstreamError
    from engine.gitops.reconcile import GitOps

    service = driving_service()
    gitops = GitOps(service)
    try:
        outcome = gitops.reconcile(name, "sync")
        for run_id in outcome.started:
            typer.echo(f"run {run_id}: {service.drive(run_id)}", err=True)
        settled = gitops.settle()
    except SlipstreamError as err:
        typer.echo(f"repo sync: {err}", err=True)
        raise typer.Exit(1) from err
    finally:
        service.close()
    if as_json:
        print_json({**outcome.to_json(), "settled": settled})
    else:
        for problem in outcome.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{name} at {outcome.commit[:12]}: {outcome.describe()}")
        for line in settled:
            typer.echo(line)
    if not outcome.ok:
        raise typer.Exit(1)


@repos.command("show")
def repo_show(name: str, as_json: JsonOpt = False) -> None:
    """A repository: its last commit and error, the runs serving its declarations."""
    from engine.errors import SlipstreamError

    try:
        doc = _gitops().status(name)
    except SlipstreamError as err:
        typer.echo(f"repo show: {err}", err=True)
        raise typer.Exit(1) from err
    if as_json:
        print_json(doc)
        return
    for key in ("name", "url", "branch", "last_commit", "last_error"):
        typer.echo(f"{key}: {doc[key]}")
    deployments = doc["deployments"]
    assert isinstance(deployments, dict)
    for decl, where in deployments.items():
        typer.echo(f"  {decl}: run {where['run'] or '-'} pending {where['pending_run'] or '-'}")
