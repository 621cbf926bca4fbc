"""The product's error types: one small hierarchy every front end can map to a reply.

Terraform's failures are here too (``TerraformError`` and its kinds, with the parsed
``Diagnostic`` they carry); ``engine.terraform.events`` is the one place that classifies
Terraform output into them.

Messages say "what was happening: why". Recipe problems carry a ``file:line:column``.

Example:
    >>> err = RecipeInvalid([Problem(Mark("web.yaml", 3, 5), "unknown key `colour`")])
    >>> str(err)
    'web.yaml:3:5: unknown key `colour`'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Mark:
    """A position in a file; line and column count from 1 (0 means the whole file)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        if self.line == 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with the input, and where."""

    mark: Mark
    message: str

    def __str__(self) -> str:
        return f"{self.mark}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.mark.file,
            "line": self.mark.line,
            "column": self.mark.col,
            "message": self.message,
        }


class SlipstreamError(Exception):
    """Base of every error the product reports to a user."""


class RecipeInvalid(SlipstreamError):
    """A recipe, a clouds file or a deploy-time override is wrong; nothing was done."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class CloudError(SlipstreamError):
    """A cloud cannot take the deployment as configured (for example an exhausted host pool)."""


class StoreError(SlipstreamError):
    """The run store cannot be opened, read or written (a damaged or garbage file, a
    missing table, a full disk, an unreachable database server).

    Example:
        >>> str(StoreError("runs.db", "cannot write", "database or disk is full"))
        'the run store runs.db cannot write: database or disk is full'
    """

    def __init__(self, where: str, doing: str, why: str) -> None:
        self.where, self.doing, self.why = where, doing, why
        super().__init__(f"the run store {where} {doing}: {why}")


class HomeUnusable(SlipstreamError):
    """The service home cannot be used: not writable, or not safe (another user owns it or
    something in it)."""


class TerraformNotFound(SlipstreamError):
    """No Terraform executable could be found or installed."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One Terraform diagnostic: an error or warning, perhaps tied to a resource or a file.

    Example:
        >>> d = Diagnostic.from_json({"severity": "error", "summary": "Bad", "detail": "why",
        ...                           "range": {"filename": "main.tf", "start": {"line": 3}}})
        >>> str(d)
        'main.tf:3: Bad: why'
    """

    severity: str
    summary: str
    detail: str = ""
    address: str | None = None
    filename: str | None = None
    line: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Diagnostic:
        rng = raw.get("range") or {}
        return cls(
            severity=str(raw.get("severity", "error")),
            summary=str(raw.get("summary", "")).strip(),
            detail=str(raw.get("detail") or "").strip(),
            address=raw.get("address") or None,
            filename=rng.get("filename"),
            line=(rng.get("start") or {}).get("line"),
        )

    @property
    def where(self) -> str:
        """The resource address, else ``file:line``, else an empty string."""
        if self.address:
            return self.address
        if self.filename:
            return f"{self.filename}:{self.line}" if self.line else self.filename
        return ""

    def __str__(self) -> str:
        first = self.detail.splitlines()[0].strip() if self.detail else ""
        text = f"{self.summary}: {first}" if first else self.summary
        return f"{self.where}: {text}" if self.where else text


class TerraformError(SlipstreamError):
    """A Terraform command failed; ``diagnostics`` are its error diagnostics, in order.

    Example:
        >>> str(TerraformError("plan", "exit status 1"))
        'terraform plan: exit status 1'
    """

    def __init__(
        self,
        step: str,
        message: str,
        stderr_tail: str = "",
        diagnostics: Sequence[Diagnostic] = (),
    ) -> None:
        self.step = step
        self.stderr_tail = stderr_tail
        self.diagnostics = list(diagnostics)
        super().__init__(f"terraform {step}: {message}")


class StateLocked(TerraformError):
    """Another command holds the state lock of this root."""


class ConfigInvalid(TerraformError):
    """The root module or its input variables are wrong; Terraform changed nothing."""


class ProviderUnavailable(TerraformError):
    """A provider could not be found or downloaded (registry unreachable, no such version)."""


class TerraformCancelled(TerraformError):
    """The command was interrupted because someone cancelled it."""


class TerraformTimeout(TerraformError):
    """The command ran longer than the runner allows and was interrupted."""


class NotFound(SlipstreamError):
    """What was asked for does not exist (or is not visible to the one asking)."""


class NotAuthenticated(SlipstreamError):
    """A request carries no valid credentials: no token, an unknown, revoked or expired one."""


class AccessDenied(SlipstreamError):
    """The actor lacks a right; ``right`` and ``scope`` say which, and nothing changed.

    Example:
        >>> str(AccessDenied("bob", "deploy", "webapp"))
        'bob lacks the `deploy` right on deployment `webapp`'
    """

    def __init__(self, actor: str, right: str, scope: str) -> None:
        self.actor = actor
        self.right = right
        self.scope = scope
        where = "every deployment" if scope == "*" else f"deployment `{scope}`"
        if right == "admin":
            super().__init__(f"{actor} is not an administrator")
        else:
            super().__init__(f"{actor} lacks the `{right}` right on {where}")


class Conflict(SlipstreamError):
    """The request does not fit the current state of things (a run not in Ready, a name
    taken); nothing changed."""


class UsageError(SlipstreamError):
    """A request is malformed (a scale spec like ``web=+x``); nothing changed."""
