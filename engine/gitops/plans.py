"""Plans of a pull request's head: what each declared deployment would create, per cloud
and node (``terraform plan`` of every compiled root, no run stored), or every recipe
problem with its location; rendered as one Markdown comment and one status line.

Text from the repository (names, recipe problems, which quote recipe text) is escaped
before it reaches Markdown: no formatting, links, HTML or ``@mentions`` can be injected.

Example:
    >>> escape_markdown("**hi** @team <b>")
    '\\\\*\\\\*hi\\\\*\\\\* &#64;team &lt;b&gt;'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import Problem, RecipeInvalid, SlipstreamError
from engine.gitops.declarations import load_declarations

if TYPE_CHECKING:
    from engine.gitops.reconcile import GitOps

MARKER = "<!-- slipstream-plan -->"
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def escape_markdown(text: str) -> str:
    """Text shown literally in GitHub, GitLab or Gitea Markdown, on one line."""
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = _SPECIAL.sub(r"\\\1", text.replace(">", "\0"))
    return text.replace("\0", "&gt;").replace("@", "&#64;")


@dataclass
class PlanReport:
    """The plan of one commit: per declaration, per cloud, counts (or the problems)."""

    repo: str
    commit: str
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # decl → cloud → counts
    problems: list[Problem] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.error

    def describe(self) -> str:
        """One line for a commit status."""
        if self.problems:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{self.problems[0]}{more}"[:140]
        if self.error:
            return self.error[:140]
        totals = {"add": 0, "change": 0, "destroy": 0}
        for clouds in self.plans.values():
            for counts in clouds.values():
                for key in totals:
                    totals[key] += int(counts.get(key, 0))
        return (
            f"plan: {totals['add']} to add, {totals['change']} to change,"
            f" {totals['destroy']} to destroy ({len(self.plans)} deployment(s))"
        )

    def markdown(self) -> str:
        """The comment: a table per declaration, or the problems, each escaped."""
        lines = [MARKER, f"### SlipStream plan for `{self.commit[:12]}`", ""]
        if self.problems:
            lines.append("The recipes have problems; nothing would be deployed:")
            lines.append("")
            lines += [f"- {escape_markdown(str(p))}" for p in self.problems]
        elif self.error:
            lines.append(f"Planning failed: {escape_markdown(self.error)}")
        elif not self.plans:
            lines.append("No deployment is declared (no `slipstream.yaml`).")
        for name, clouds in sorted(self.plans.items()):
            lines += ["", f"**{escape_markdown(name)}**", ""]
            lines += ["| cloud | node | add | change | destroy |", "|---|---|---|---|---|"]
            for cloud, counts in sorted(clouds.items()):
                for node, c in sorted(counts.get("nodes", {}).items()):
                    row = [escape_markdown(cloud), escape_markdown(node or "(shared)")]
                    row += [str(c["add"]), str(c["change"]), str(c["destroy"])]
                    lines.append("| " + " | ".join(row) + " |")
        lines += ["", self.describe() if self.ok else "Status: failure"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {
            "repository": self.repo,
            "commit": self.commit,
            "ok": self.ok,
            "plans": self.plans,
            "problems": [p.to_json() for p in self.problems],
            "error": self.error,
        }


def plan_commit(gitops: GitOps, name: str, sha: str, refs: tuple[str, ...] = ()) -> PlanReport:
    """Fetch ``sha`` (through ``refs`` if need be) and plan every declared deployment."""
    from engine.recipes.loader import RecipeLoader

    repo = gitops.repository(name)
    report = PlanReport(name, sha)
    try:
        clone = gitops.clone(repo)
        clone.fetch_commit(sha, refs)
        tree = clone.tree(sha)
        declarations = load_declarations(tree)
        config = gitops.service.clouds()
        loaded = {}
        for decl in declarations:
            loader = RecipeLoader(tree, config, walk=True)
            try:
                loaded[decl.name] = loader.deployment(
                    decl.ref(tree), decl.overrides(), require_values=True
                )
            except RecipeInvalid as err:
                report.problems.extend(err.problems)
        if report.problems:
            return report
        for decl_name, dep in loaded.items():
            report.plans[decl_name] = gitops.service.manager().preview(dep, config)
    except RecipeInvalid as err:
        report.problems = err.problems
    except SlipstreamError as err:
        report.error = str(err)
    return report
