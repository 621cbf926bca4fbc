"""Structured logs: one JSON document per line, with the run id of whatever logged it.

``serve`` and ``worker`` switch them on with ``--json-logs`` (or ``SLIPSTREAM_LOG_JSON=1``).
The run id comes from the job being run on this thread (:func:`current_run`), or from a
``run_id`` attribute of the record (``log.info(..., extra={"run_id": r})``); lines about
no run have ``"run_id": null``.

Example:
    >>> import logging
    >>> record = logging.LogRecord("engine", logging.INFO, "f.py", 1, "apply done", (), None)
    >>> with current_run("0f3a9c"):
    ...     doc = json.loads(JsonFormatter().format(record))
    >>> doc["run_id"], doc["message"], doc["level"]
    ('0f3a9c', 'apply done', 'info')
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("slipstream_run", default=None)


@contextmanager
def current_run(run_id: str) -> Iterator[None]:
    """Lines logged inside carry ``run_id``."""
    token = _RUN.set(run_id)
    try:
        yield
    finally:
        _RUN.reset(token)


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time, level, logger, run id, message."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None) or _RUN.get(),
            "process": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(json_logs: bool | None = None, level: int = logging.INFO) -> None:
    """Log to standard error, as JSON lines when asked (flag, else ``SLIPSTREAM_LOG_JSON``)."""
    if json_logs is None:
        json_logs = os.environ.get("SLIPSTREAM_LOG_JSON", "") not in ("", "0", "false")
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
