"""Refused agent requests: one type per HTTP status the agent API answers with.

Example:
    >>> Forbidden("`db.1:url` belongs to another instance").status
    403
"""

from __future__ import annotations


class AgentError(Exception):
    """A refused agent request; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AgentError):
    status = 400


class Unauthorized(AgentError):
    status = 401


class Forbidden(AgentError):
    status = 403


class NotFound(AgentError):
    status = 404


class TooMany(AgentError):
    """The instance used up what it may post."""

    status = 429


class Aborted(AgentError):
    """The run's abort flag is up: the fence refuses every get and set."""

    status = 409
