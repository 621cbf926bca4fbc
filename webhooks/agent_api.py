"""The agent (coordination) API: what `ss-get`, `ss-set` and the agent daemon call.

Each instance holds a bearer token scoped to its run; only its SHA-256 is stored. Routes
only turn HTTP into :class:`~engine.coordination.coordinator.Coordinator` calls and back.

Example:
    GET /agent/v1/runs/<run>/params/db_url?wait=30   Authorization: Bearer <token>
    → 200 {"key": "db.1:url", "value": "http://127.0.0.1:5480"}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file

from engine.agent import AGENT_FILE
from engine.coordination.coordinator import (
    MAX_VALUE_BYTES,
    AgentError,
    BadRequest,
    Coordinator,
    Forbidden,
    clip_utf8,
    token_hash,
)
from engine.files import write_atomic_bytes

MAX_REPORT_BYTES = 50 * 1024 * 1024

bp = Blueprint("agent_api", __name__, url_prefix="/agent/v1")


def _coordinator() -> Coordinator:
    coordinator: Coordinator = current_app.config["SLIPSTREAM_COORDINATOR"]
    return coordinator


@bp.errorhandler(AgentError)
def _agent_error(err: AgentError) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": err.message}
    if err.status == 409:
        body = {"error": "aborted", "abort": err.message}
    return jsonify(body), err.status


@bp.get("/agent.py")
def agent_file() -> Response:
    return send_file(AGENT_FILE, mimetype="text/x-python")


@bp.url_value_preprocessor
def _authenticate(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if endpoint == "agent_api.agent_file" or values is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    owner = _coordinator().owner(token_hash(token.strip()))
    if owner is None:
        raise Unauthorized("unknown token")
    if owner[0] != values.get("run_id"):
        raise Forbidden("token belongs to another run")
    g.instance = owner[1]


class Unauthorized(AgentError):
    status = 401


def _wait() -> float:
    try:
        wait = float(request.args.get("wait", "0"))
    except ValueError as exc:
        raise BadRequest("wait must be a number of seconds") from exc
    if not math.isfinite(wait):
        raise BadRequest("wait must be a finite number of seconds")
    return wait


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


@bp.get("/runs/<run_id>/recipe")
def recipe(run_id: str) -> Response:
    coordinator = _coordinator()
    node, _, index = g.instance.partition(".")
    body = coordinator.spec(run_id)["nodes"][node]
    cloud = body["clouds"][(int(index) - 1) % len(body["clouds"])]
    return jsonify(
        {
            "instance": g.instance,
            "node": node,
            "index": int(index),
            "cloud_type": body["cloud_types"][cloud],
            "packages": body["packages"],
            "built": False,
            "scripts": body["scripts"],
        }
    )


@bp.get("/runs/<run_id>/params/<path:key>")
def get_param(run_id: str, key: str) -> tuple[Response, int]:
    coordinator = _coordinator()
    stored, value = coordinator.get(run_id, g.instance, key, _wait())
    if value is None:
        return jsonify({"error": "not set"}), 408
    return jsonify({"key": stored, "value": value}), 200


@bp.put("/runs/<run_id>/params/<path:key>")
def set_param(run_id: str, key: str) -> tuple[Response, int]:
    value = _json().get("value")
    if not isinstance(value, str):
        raise BadRequest("`value` must be text")
    stored = _coordinator().put(run_id, g.instance, key, value)
    return jsonify({"key": stored}), 200


@bp.get("/runs/<run_id>/nodes/<node>/params/<key>")
def get_all(run_id: str, node: str, key: str) -> tuple[Response, int]:
    values = _coordinator().get_all(run_id, g.instance, node, key, _wait())
    if values is None:
        return jsonify({"error": "not set"}), 408
    return jsonify({"values": values}), 200


@bp.post("/runs/<run_id>/abort")
def abort(run_id: str) -> Response:
    body = _json()
    message = str(body.get("message") or f"aborted by {g.instance}")
    raised = _coordinator().abort(run_id, message, cancel=bool(body.get("cancel")))
    return jsonify({"raised": raised})


@bp.get("/runs/<run_id>/state")
def state(run_id: str) -> Response:
    current, abort_message = _coordinator().wait_state(run_id, request.args.get("after"), _wait())
    return jsonify({"state": current, "abort": abort_message})


@bp.post("/runs/<run_id>/votes")
def vote(run_id: str) -> Response:
    state_name = str(_json().get("state", ""))
    _coordinator().vote(run_id, g.instance, state_name)
    return jsonify({"ok": True})


@bp.post("/runs/<run_id>/events")
def add_event(run_id: str) -> Response:
    body = _json()
    message = clip_utf8(str(body.get("message", "")), MAX_VALUE_BYTES)
    level = str(body.get("level", "info"))[:16]
    if not message.startswith(f"{g.instance}:"):
        message = f"{g.instance}: {message}"
    _coordinator().store.add_event(
        run_id, "agent", message, {"instance": g.instance, "level": level}
    )
    return jsonify({"ok": True})


@bp.post("/runs/<run_id>/reports")
def upload_report(run_id: str) -> Response:
    if (request.content_length or 0) > MAX_REPORT_BYTES:
        raise BadRequest(f"report is over {MAX_REPORT_BYTES} bytes")
    data = request.get_data(cache=False)
    if len(data) > MAX_REPORT_BYTES:
        raise BadRequest(f"report is over {MAX_REPORT_BYTES} bytes")
    home: Path = current_app.config["SLIPSTREAM_HOME"]
    target = home / "runs" / run_id / "reports" / f"{g.instance}.tar.gz"
    write_atomic_bytes(target, data, mode=0o600)
    coordinator = _coordinator()
    coordinator.store.add_report(run_id, g.instance, str(target), len(data))
    coordinator.store.add_event(
        run_id,
        "report",
        f"{g.instance}: report uploaded ({len(data)} bytes)",
        {"instance": g.instance},
    )
    return jsonify({"ok": True, "size": len(data)})
