"""Git hosts' webhook deliveries: which host sent one, whether it is genuine, what it says.

- GitHub: ``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256: sha256=<hex>``
  (HMAC-SHA256 of the raw body with the webhook's secret).
- GitLab: ``X-Gitlab-Event``, ``X-Gitlab-Token`` (the secret itself), a delivery id in
  ``X-Gitlab-Event-UUID`` or ``Idempotency-Key``.
- Gitea and Forgejo: ``X-Gitea-Event`` / ``X-Forgejo-Event``, ``X-Gitea-Delivery``,
  ``X-Gitea-Signature: <hex>`` (HMAC-SHA256, no prefix). Gitea also sends GitHub's headers,
  so it is recognised first.

Every comparison is constant-time (:func:`hmac.compare_digest`) over the raw body.

Example:
    >>> body = b'{"zen": "hi"}'
    >>> sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    >>> headers = {"x-github-event": "ping", "x-github-delivery": "d1", "x-hub-signature-256": sig}
    >>> verify(headers, body, "s3cret")
    'github'
    >>> parse("github", headers, body).event
    'ping'
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Forged(Exception):
    """The delivery is unsigned or its signature (token) is wrong."""


class Malformed(Exception):
    """The delivery cannot be understood (the message says why)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery asks for. ``event``: push, pull_request, ping or other."""

    host: str
    delivery_id: str
    event: str
    ref: str = ""  # refs/heads/<branch> of a push
    before: str = ""
    after: str = ""
    repository: str = ""  # owner/name (GitHub, Gitea) or the project's path (GitLab)
    project_id: str = ""  # GitLab's numeric project id
    number: int = 0  # pull / merge request number (GitLab: its iid)
    action: str = ""  # opened, synchronize, reopened, closed … (GitLab: open, update …)
    head_sha: str = ""
    head_ref: str = ""
    base_ref: str = ""

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def wants_plan(self) -> bool:
        """A pull request opened or updated (a closed one needs no plan)."""
        return self.event == "pull_request" and self.action in PLAN_ACTIONS

    @property
    def commit(self) -> str:
        return self.head_sha if self.event == "pull_request" else self.after


# GitHub: opened, synchronize, reopened; Gitea/Forgejo: synchronized; GitLab: open, update …
PLAN_ACTIONS = ("opened", "synchronize", "synchronized", "reopened", "open", "update", "reopen")
_ZERO = "0" * 40


def host_of(headers: Mapping[str, str]) -> str | None:
    """The host that sent a delivery (headers in lower case), or None."""
    if "x-gitea-event" in headers or "x-forgejo-event" in headers:
        return "gitea"
    if "x-gitlab-event" in headers:
        return "gitlab"
    if "x-github-event" in headers:
        return "github"
    return None


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> str:
    """The host of a genuine delivery; Forged for anything unsigned or wrongly signed."""
    host = host_of(headers)
    if host is None or not secret:
        raise Forged("no known host's headers")
    key = secret.encode()
    if host == "gitlab":
        given = headers.get("x-gitlab-token", "").encode()
        ok = bool(given) and hmac.compare_digest(given, key)
    else:
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if host == "gitea":
            given_text = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature", "")
        else:
            given_text = headers.get("x-hub-signature-256", "").removeprefix("sha256=")
            if not headers.get("x-hub-signature-256", "").startswith("sha256="):
                given_text = ""
        ok = bool(given_text) and hmac.compare_digest(given_text.encode(), expected.encode())
    if not ok:
        raise Forged(f"bad {host} signature")
    return host


def parse(host: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """The delivery's meaning; Malformed when its id, JSON or fields are missing."""
    delivery_id = _delivery_id(host, headers)
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Malformed(f"body is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise Malformed("body is not a JSON object")
    try:
        if host == "gitlab":
            return _gitlab(headers.get("x-gitlab-event", ""), delivery_id, doc)
        event = headers.get("x-gitea-event") or headers.get("x-forgejo-event") or ""
        return _github_like(host, event or headers.get("x-github-event", ""), delivery_id, doc)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise Malformed(f"unexpected {host} payload: missing or wrong {err}") from err


def _delivery_id(host: str, headers: Mapping[str, str]) -> str:
    names = {
        "github": ("x-github-delivery",),
        "gitea": ("x-gitea-delivery", "x-forgejo-delivery", "x-github-delivery"),
        "gitlab": ("x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid"),
    }[host]
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            if len(value) > 200 or not value.isprintable():
                raise Malformed(f"{name} is not a delivery id")
            return value
    raise Malformed(f"no delivery id ({' or '.join(names)})")


def _sha(value: Any) -> str:
    text = str(value or "")
    if text and (len(text) not in (40, 64) or any(c not in "0123456789abcdef" for c in text)):
        raise ValueError("commit id")
    return "" if text == _ZERO else text


def _github_like(host: str, event: str, delivery_id: str, doc: dict[str, Any]) -> Delivery:
    repo = doc.get("repository") or {}
    full_name = str(repo.get("full_name", ""))
    if event == "push":
        return Delivery(
            host, delivery_id, "push", ref=str(doc["ref"]), before=_sha(doc.get("before")),
            after=_sha(doc["after"]), repository=full_name,
        )  # fmt: skip
    if event == "pull_request":
        pr = doc["pull_request"]
        return Delivery(
            host, delivery_id, "pull_request", repository=full_name,
            number=int(doc.get("number") or pr["number"]), action=str(doc["action"]),
            head_sha=_sha(pr["head"]["sha"]), head_ref=str(pr["head"]["ref"]),
            base_ref=str(pr["base"]["ref"]),
        )  # fmt: skip
    return Delivery(host, delivery_id, "ping" if event == "ping" else "other", repository=full_name)


def _gitlab(event: str, delivery_id: str, doc: dict[str, Any]) -> Delivery:
    kind = doc.get("object_kind", "")
    project = doc.get("project") or {}
    where: dict[str, Any] = {
        "repository": str(project.get("path_with_namespace", "")),
        "project_id": str(project.get("id", doc.get("project_id", ""))),
    }
    if kind == "push" or event == "Push Hook":
        after = _sha(doc.get("checkout_sha") or doc["after"])
        return Delivery(
            "gitlab", delivery_id, "push", ref=str(doc["ref"]), before=_sha(doc.get("before")),
            after=after, **where,
        )  # fmt: skip
    if kind == "merge_request" or event == "Merge Request Hook":
        mr = doc["object_attributes"]
        return Delivery(
            "gitlab", delivery_id, "pull_request", number=int(mr["iid"]),
            action=str(mr.get("action", "")), head_sha=_sha(mr["last_commit"]["id"]),
            head_ref=str(mr["source_branch"]), base_ref=str(mr["target_branch"]), **where,
        )  # fmt: skip
    return Delivery("gitlab", delivery_id, "other", **where)
