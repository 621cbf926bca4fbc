"""The HTTP server's app factory: ``create_app(home, coordinator)``.

Example:
    >>> from engine.coordination.hub import Hub
    >>> from engine.store.runstore import RunStore
    >>> from engine.coordination.coordinator import Coordinator
    >>> app = create_app(Path("."), Coordinator(RunStore.open("sqlite://"), Hub()))
    >>> app.test_client().get("/healthz").json
    {'ok': True}
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, jsonify

from engine.coordination.coordinator import Coordinator
from webhooks.agent_api import bp as agent_bp


def create_app(home: Path, coordinator: Coordinator) -> Flask:
    """A Flask app serving the agent API for the runs of ``coordinator``'s store."""
    app = Flask("slipstream")
    app.config["SLIPSTREAM_HOME"] = home
    app.config["SLIPSTREAM_COORDINATOR"] = coordinator
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.register_blueprint(agent_bp)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    return app
