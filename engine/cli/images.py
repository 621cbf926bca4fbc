"""``slipstream build`` and ``slipstream images``: the image factory.

``build`` prepares a component on several clouds at once and records one image per
(component content hash, cloud); deploys on those clouds then boot the image and skip the
install steps. Building an unchanged component again reuses its image.

Example:
    $ slipstream build web --cloud local --cloud aws-eu
    $ slipstream images --component web
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from engine.cli.options import CloudsOpt, JsonOpt, RootOpt, deployment_root, user
from engine.cli.output import fail, print_json, printable


def embedded_only(command: str) -> None:
    """Exit 2 when this shell acts through a resident service (``SLIPSTREAM_URL``): the
    command works on the service home of this host only, for now."""
    import os

    if os.environ.get("SLIPSTREAM_URL") or os.environ.get("SLIPSTREAM_TOKEN"):
        typer.echo(
            f"usage: {command}: not available as a client of a service yet; run it on the"
            " service's host (unset SLIPSTREAM_URL and SLIPSTREAM_TOKEN)",
            err=True,
        )
        raise typer.Exit(2)


BuildCloudOpt = Annotated[
    list[str], typer.Option("--cloud", help="a cloud to build on (repeat for several)")
]


def build(
    component: Annotated[str, typer.Argument(help="the component to bake into an image")],
    cloud: BuildCloudOpt,
    root: RootOpt = None,
    clouds: CloudsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build COMPONENT's image on every --cloud in parallel (install steps of its chain,
    parent first), or reuse the current one; the build machines are always destroyed."""
    from engine.cli.runs import driving_service
    from engine.errors import CloudError, RecipeInvalid
    from engine.runs.quotas import QuotaExceeded

    embedded_only("build")
    service = driving_service(clouds)

    def on_run(name: str, run_id: str) -> None:
        typer.echo(f"{name}: building `{component}` in run {run_id}", err=True)

    try:
        base, _ = deployment_root(component, root)
        outcomes = service.build(service.local_actor(user()), component, cloud, base, on_run)
    except RecipeInvalid as err:
        service.close()
        fail(err.problems, as_json, "build")
    except (CloudError, QuotaExceeded) as err:
        service.close()
        typer.echo(str(err) if isinstance(err, CloudError) else f"build: {err}", err=True)
        raise typer.Exit(1) from err
    service.close()
    if as_json:
        print_json({"builds": [o.to_json() for o in outcomes]})
    else:
        for o in outcomes:
            if o.error:
                typer.echo(f"{o.cloud}: build failed: {printable(o.error)}")
            elif o.reused:
                typer.echo(
                    f"{o.cloud}: `{component}` is unchanged ({o.content_hash[:12]}): "
                    f"reusing image {o.image_id}"
                )
            else:
                typer.echo(
                    f"{o.cloud}: image {o.image_id} of `{component}` ({o.content_hash[:12]})"
                    f" built in {o.seconds:.1f}s"
                )
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


def images(
    component: Annotated[str | None, typer.Option("--component", help="one component's")] = None,
    root: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Built images: cloud, content hash, date, size, and whether each is current."""
    from engine.cli.inspection import reading_service

    embedded_only("images")
    service = reading_service()  # no home yet: no images, and none is made
    rows = []
    if service is not None:
        base = deployment_root("", root)[0]
        rows = service.images(service.local_actor(user()), component, base)
    if as_json:
        print_json({"images": rows})
        return
    if not rows:
        typer.echo("no images")
        return
    typer.echo(
        f"{'COMPONENT':<20} {'CLOUD':<12} {'HASH':<12} {'BUILT (UTC)':<19} {'SIZE':>10}"
        f" {'STATE':<8} IMAGE"
    )
    for row in rows:
        state = {True: "current", False: "stale", None: "?"}[row["current"]]
        size = _size(row["size_bytes"])
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["created_at"]))
        typer.echo(
            f"{row['component']:<20} {row['cloud']:<12} {row['hash'][:12]:<12} {built:<19}"
            f" {size:>10} {state:<8} {row['image']}"
        )


def _size(size: int) -> str:
    """A size in bytes for people.

    >>> _size(0), _size(2048), _size(5 << 20)
    ('-', '2.0 KiB', '5.0 MiB')
    """
    if size <= 0:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
