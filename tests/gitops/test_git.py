"""The service's clones with real git: fetch a branch, export commits, refuse odd trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.gitops.git import Clone, GitError
from tests.gitops.gitrepo import Origin, git


def test_fetch_export_and_a_commit_only_on_another_branch(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "git")
    first = origin.commit({"slipstream.yaml": "deployments: {}\n"}, "one")
    origin.push()
    side = origin.commit({"apps/x.yaml": "kind: component\n"}, "side", branch="feature")
    origin.push("feature")
    clone = Clone(tmp_path / "home" / "gitops" / "infra", str(origin.bare))
    assert clone.fetch("main") == first
    tree = clone.tree(first)
    assert (tree / "slipstream.yaml").read_text() == "deployments: {}\n"
    assert clone.tree(first) == tree  # exported once
    assert not clone.has(side)
    assert clone.fetch_commit(side, ("refs/pull/1/head", "refs/heads/feature")) == side
    assert (clone.tree(side) / "apps" / "x.yaml").exists()
    with pytest.raises(GitError, match="not a branch name"):
        clone.fetch("--upload-pack=touch /tmp/x")
    with pytest.raises(GitError, match="not a commit id"):
        clone.tree("HEAD")


def test_a_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "git")
    os.symlink("/etc/passwd", origin.work / "evil.yaml")
    sha = origin.commit({"slipstream.yaml": "deployments: {}\n"}, "evil")
    origin.push()
    clone = Clone(tmp_path / "home" / "gitops" / "evil", str(origin.bare))
    assert clone.fetch("main") == sha
    assert git("rev-parse", "HEAD", cwd=origin.work) == sha
    with pytest.raises(GitError, match="cannot be exported"):
        clone.tree(sha)
    assert not (tmp_path / "home" / "gitops" / "evil" / "trees" / sha).exists()
