"""The agents' HTTP server of a process that drives runs itself (the embedded CLI, a
notebook's kernel): the app on a private Unix socket and on loopback TCP, started with the
first run and stopped with the service.

Example (not run as a doctest: it starts a server)::

        service = Service(home, serve_agents(home))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.coordination.coordinator import Coordinator
    from engine.runs.endpoints import Endpoints


def serve_agents(home: Path) -> Callable[[Coordinator], tuple[Endpoints, Callable[[], None]]]:
    """The :data:`engine.service.Serve` function of ``home``: given the coordinator, start
    serving agents; return their addresses and the function that stops the server."""

    def serve(coordinator: Coordinator) -> tuple[Endpoints, Callable[[], None]]:
        # Imported here: a command that drives no run must not pay for the server.
        from engine.runs.endpoints import Endpoints
        from webhooks.app import create_app
        from webhooks.server import HttpServer

        server = HttpServer(
            create_app(home, coordinator),
            unix=home.resolve() / "sockets" / f"{os.getpid()}.sock",
            tcp=("127.0.0.1", 0),
            on_loop=coordinator.hub.attach,
        ).start()

        def stop() -> None:
            coordinator.hub.close()  # long-polls answer now rather than being cut
            server.stop()

        return Endpoints(server.unix_url, server.tcp_url), stop

    return serve
