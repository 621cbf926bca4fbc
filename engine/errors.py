"""The product's error types: one small hierarchy every front end can map to a reply.

Messages say "what was happening: why". Recipe problems carry a ``file:line:column``.

Example:
    >>> err = RecipeInvalid([Problem(Mark("web.yaml", 3, 5), "unknown key `colour`")])
    >>> str(err)
    'web.yaml:3:5: unknown key `colour`'
"""

from __future__ import annotations

from dataclasses import dataclass


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


class TerraformNotFound(SlipstreamError):
    """No Terraform executable could be found or installed."""
