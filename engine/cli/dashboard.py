"""``slipstream dashboard``: the run explorer of a service home as a web page (Voilà).

Voilà runs ``notebooks/dashboard.ipynb`` in a fresh kernel for each visitor and shows only
its widgets: the run table with its filters, a run's details and timeline, report
archives, Destroy behind a confirmation. It listens on loopback unless ``--host`` says
otherwise, and Voilà has no login of its own: whoever reaches the port acts as the home's
owner. Importing this module costs nothing: Voilà and the widgets load in the process it
becomes.

Example:
    $ slipstream dashboard --port 8866 --home /srv/slipstream
    # then open http://127.0.0.1:8866/
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.options import service_home

NOTEBOOK = "dashboard.ipynb"


def dashboard_notebook() -> Path | None:
    """The dashboard notebook shipped in the ``notebooks`` package (not imported).

    >>> dashboard_notebook().name
    'dashboard.ipynb'
    """
    spec = importlib.util.find_spec("notebooks")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / NOTEBOOK
    return path if path.is_file() else None


def voila_argv(notebook: Path, host: str, port: int) -> list[str]:
    """The Voilà command serving ``notebook`` (pure: tested by equality).

    >>> argv = voila_argv(Path("/n/dashboard.ipynb"), "127.0.0.1", 8866)
    >>> argv[1:6]
    ['-m', 'voila', '--no-browser', '--Voila.ip=127.0.0.1', '--port=8866']
    >>> argv[6], argv[-1]
    ('--Voila.port_retries=0', '/n/dashboard.ipynb')
    """
    return [
        sys.executable,
        "-m",
        "voila",
        "--no-browser",
        f"--Voila.ip={host}",
        f"--port={port}",
        "--Voila.port_retries=0",
        # Each page load has its kernel: end those of pages closed and idle for 5 minutes.
        "--MappingKernelManager.cull_idle_timeout=300",
        "--MappingKernelManager.cull_interval=60",
        str(notebook),
    ]


def dashboard(
    port: Annotated[int, typer.Option("--port", help="TCP port (default 8866)")] = 8866,
    home: Annotated[
        Path | None, typer.Option("--home", help="service home (default: $SLIPSTREAM_HOME)")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on (default loopback)")
    ] = "127.0.0.1",
) -> None:
    """Serve the run explorer of a service home as a web page (needs the notebooks extra)."""
    if not 0 < port < 65536:
        typer.echo(f"dashboard: --port {port}: expected 1 to 65535", err=True)
        raise typer.Exit(2)
    notebook = dashboard_notebook()
    if notebook is None or importlib.util.find_spec("voila") is None:
        typer.echo(
            "dashboard: Voilà is not installed: pip install 'slipstream-tf[notebooks]'", err=True
        )
        raise typer.Exit(1)
    folder = (home or service_home()).resolve()
    env = dict(os.environ, SLIPSTREAM_HOME=str(folder))
    typer.echo(f"dashboard of {folder} on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    sys.stderr.flush()
    # Voilà becomes this process: signals (Ctrl-C, a service manager's SIGTERM) reach it.
    os.execve(sys.executable, voila_argv(notebook, host, port), env)
