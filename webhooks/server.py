"""Serving an app on a loopback port from a background thread (the embedded server).

Example:
    >>> from flask import Flask
    >>> server = EmbeddedServer(Flask("x"))
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.stop()
"""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """No access log: agents long-poll all day, and the run's events say what matters."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class EmbeddedServer:
    """A threaded WSGI server on ``host`` (port 0: any free port), started at once."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietHandler
        )
        # Hundreds of agents connect at once (werkzeug closes every connection after one
        # request); the default backlog of 128 drops SYNs, which cost 1-3 s retries.
        self._server.socket.listen(1024)
        # Long-polls hold a thread each; daemon threads never block shutdown.
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
