"""The service's clones: plain ``git`` through argv lists, never a shell.

Each repository has a bare mirror of its tracked branch in the service home
(``gitops/<name>/mirror.git``); each commit reconciled or planned is exported once into
``gitops/<name>/trees/<sha>/`` (``git archive``), an immutable tree runs are created from,
so two pushes never see each other's files. Credentials in a URL are the user's business
(a deploy key in ``~/.ssh``, a token in a credential helper); they are never logged.

Example (not run: it clones)::

        clone = Clone(home / "gitops" / "infra", "https://git.example/infra.git")
        sha = clone.fetch("main")
        tree = clone.tree(sha)      # a folder holding the commit's files
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from engine.errors import SlipstreamError
from engine.files import make_dirs

GIT_TIMEOUT_S = 300
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_REF = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


class GitError(SlipstreamError):
    """A git command failed (the message names the command and git's last line)."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", LC_ALL="C")
    return env


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    """Run ``git ARGS``; GitError with git's last line of stderr when it fails."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=_env(),
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit {done.returncode}"
        raise GitError(f"git {args[0]}: {why}")
    return done.stdout


class Clone:
    """A bare mirror of one repository and the trees exported from it."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url
        self.mirror = folder / "mirror.git"

    def _ensure(self) -> None:
        if not (self.mirror / "HEAD").exists():
            make_dirs(self.folder)
            git("init", "--bare", "--quiet", str(self.mirror))
        git("config", "remote.origin.url", self.url, cwd=self.mirror)

    def fetch(self, branch: str) -> str:
        """Fetch ``branch``; the commit it points at now."""
        if not _REF.fullmatch(branch):
            raise GitError(f"`{branch}` is not a branch name")
        self._ensure()
        target = f"refs/remotes/origin/{branch}"
        git(
            "fetch",
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{branch}:{target}",
            cwd=self.mirror,
        )
        return (
            git("rev-parse", "--verify", f"{target}^{{commit}}", cwd=self.mirror).decode().strip()
        )

    def fetch_commit(self, sha: str, refs: tuple[str, ...] = ()) -> str:
        """Make ``sha`` present: fetched by itself, else through one of ``refs`` (a pull
        request's head ref, its branch)."""
        if not _SHA.fullmatch(sha):
            raise GitError(f"`{sha}` is not a commit id")
        self._ensure()
        if self.has(sha):
            return sha
        for ref in (sha, *refs):
            if not _REF.fullmatch(ref):
                continue
            try:
                git("fetch", "--quiet", "--no-tags", "origin", ref, cwd=self.mirror)
            except GitError:
                continue
            if self.has(sha):
                return sha
        raise GitError(f"git fetch: commit {sha[:12]} not found at {self.url}")

    def has(self, sha: str) -> bool:
        try:
            git("cat-file", "-e", f"{sha}^{{commit}}", cwd=self.mirror)
        except GitError:
            return False
        return True

    def tree(self, sha: str) -> Path:
        """The commit's files in ``trees/<sha>/`` (exported once, then reused)."""
        if not _SHA.fullmatch(sha):
            raise GitError(f"`{sha}` is not a commit id")
        target = self.folder / "trees" / sha
        if target.is_dir():
            return target
        make_dirs(target.parent)
        archive = git("archive", "--format=tar", sha, cwd=self.mirror)
        scratch = Path(tempfile.mkdtemp(prefix=".tree-", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                if hasattr(tarfile, "data_filter"):  # Python ≥ 3.11.4: refuse odd members
                    tar.extractall(scratch, filter="data")
                else:  # links out of the tree are refused later by the recipe finder
                    tar.extractall(scratch)
            os.replace(scratch, target)
        except FileExistsError:
            pass  # another job exported it first
        except (tarfile.TarError, OSError) as err:
            raise GitError(f"commit {sha[:12]} cannot be exported: {err}") from err
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
