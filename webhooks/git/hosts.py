"""Commit statuses and pull request comments through each Git host's REST API.

- GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` (state pending, success,
  failure, error; ``context``, ``description``), comments ``POST
  {api}/repos/{o}/{r}/issues/{n}/comments`` then ``PATCH {api}/repos/{o}/{r}/issues/comments/{id}``;
  ``Authorization: Bearer <token>``.
- GitLab: ``POST {api}/projects/{id}/statuses/{sha}`` (state pending, running, success,
  failed; ``name``), notes ``POST {api}/projects/{id}/merge_requests/{iid}/notes`` then
  ``PUT …/notes/{note_id}``; ``PRIVATE-TOKEN: <token>``.
- Gitea / Forgejo: ``POST {api}/repos/{o}/{r}/statuses/{sha}`` (pending, success, failure,
  error), comments like GitHub's; ``Authorization: token <token>``.

The token comes from the environment variable the repository names; it is sent only to the
configured API base and never logged.

Example (not run: it calls the host)::

        client = host_client(repo)
        client.status("3f2a…", "failure", "apps/web.yaml:3:5: unknown key `colour`")
        comment_id = client.comment(7, "### SlipStream plan …", None)
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any, ClassVar
from urllib.parse import quote

from engine.gitops.registry import DEFAULT_API, Repository

log = logging.getLogger(__name__)
CONTEXT = "slipstream"
TIMEOUT_S = 20


class HostError(Exception):
    """The host API refused a call (the message names the call and the status)."""


class HostClient:
    """One repository's host API: statuses and one comment per pull request."""

    auth_header = "Authorization"
    auth_prefix = "Bearer "

    def __init__(self, api_url: str, project: str, token: str) -> None:
        self.api = api_url.rstrip("/")
        self.project = project
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.api + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "slipstream",
                self.auth_header: self.auth_prefix + self.token,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                raw = response.read()
        except OSError as err:
            raise HostError(f"{method} {path}: {err}") from err
        doc = json.loads(raw) if raw.strip() else {}
        return doc if isinstance(doc, dict) else {}

    def repo_path(self) -> str:
        owner, _, name = self.project.partition("/")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def status(self, sha: str, state: str, description: str) -> None:
        """Set the commit status (state: pending, success or failure)."""
        body = {"state": state, "context": CONTEXT, "description": description[:140]}
        self.call("POST", f"{self.repo_path()}/statuses/{sha}", body)

    def comment(self, number: int, text: str, comment_id: str | None) -> str:
        """Create the comment, or update it in place; returns its id."""
        if comment_id:
            path = f"{self.repo_path()}/issues/comments/{comment_id}"
            self.call("PATCH", path, {"body": text})
            return comment_id
        made = self.call("POST", f"{self.repo_path()}/issues/{number}/comments", {"body": text})
        return str(made["id"])


class GitHub(HostClient):
    pass


class Gitea(HostClient):
    auth_prefix = "token "


class GitLab(HostClient):
    auth_header = "PRIVATE-TOKEN"
    auth_prefix = ""
    STATES: ClassVar[dict[str, str]] = {
        "pending": "running",
        "success": "success",
        "failure": "failed",
    }

    def _project(self) -> str:
        return f"/projects/{quote(self.project, safe='')}"

    def status(self, sha: str, state: str, description: str) -> None:
        body = {"state": self.STATES[state], "name": CONTEXT, "description": description[:140]}
        self.call("POST", f"{self._project()}/statuses/{sha}", body)

    def comment(self, number: int, text: str, comment_id: str | None) -> str:
        notes = f"{self._project()}/merge_requests/{number}/notes"
        if comment_id:
            self.call("PUT", f"{notes}/{comment_id}", {"body": text})
            return comment_id
        return str(self.call("POST", notes, {"body": text})["id"])


CLIENTS: dict[str, type[HostClient]] = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}


def host_client(repo: Repository, project: str = "") -> HostClient | None:
    """The client of ``repo``'s host, or None when it reports nowhere (no host, no token,
    no project known). ``project``: the one a delivery named, when none is registered."""
    cls = CLIENTS.get(repo.host)
    token = os.environ.get(repo.token_env, "") if repo.token_env else ""
    api = repo.api_url or DEFAULT_API.get(repo.host, "")
    project = repo.project or project
    if cls is None or not token or not api or not project:
        return None
    return cls(api, project, token)
