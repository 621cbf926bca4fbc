"""Deliveries as GitHub, GitLab and Gitea really send them (tests/gitops/payloads/: GitHub's
from the npm package @octokit/webhooks-examples, GitLab's and Gitea's from their docs)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from engine.gitops.plans import escape_markdown
from webhooks.git.payloads import Forged, Malformed, parse, verify

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"


def body_of(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def signed(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_github_push_pull_request_and_ping() -> None:
    body = body_of("github-push.json")
    headers = {
        "x-github-event": "push",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-hub-signature-256": "sha256=" + signed(body),
    }
    push = parse(verify(headers, body, SECRET), headers, body)
    doc = json.loads(body)
    assert (push.event, push.branch, push.after) == ("push", "master", doc["after"])
    assert push.repository == "Codertocat/Hello-World"

    body = body_of("github-pull_request.json")
    headers.update(
        {"x-github-event": "pull_request", "x-hub-signature-256": "sha256=" + signed(body)}
    )
    pr = parse(verify(headers, body, SECRET), headers, body)
    doc = json.loads(body)
    assert (pr.number, pr.action, pr.head_sha) == (
        doc["number"],
        "opened",
        doc["pull_request"]["head"]["sha"],
    )
    assert pr.wants_plan and pr.base_ref == doc["pull_request"]["base"]["ref"]


def test_gitlab_push_and_merge_request_by_their_token() -> None:
    body = body_of("gitlab-push.json")
    headers = {"x-gitlab-event": "Push Hook", "x-gitlab-token": SECRET, "x-gitlab-event-uuid": "u1"}
    push = parse(verify(headers, body, SECRET), headers, body)
    assert (push.host, push.branch, push.project_id) == ("gitlab", "master", "15")
    assert push.after == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    body = body_of("gitlab-merge_request.json")
    headers = {"x-gitlab-event": "Merge Request Hook", "x-gitlab-token": SECRET}
    headers["idempotency-key"] = "k-7"
    mr = parse(verify(headers, body, SECRET), headers, body)
    assert (mr.event, mr.number, mr.action, mr.head_ref) == (
        "pull_request",
        1,
        "open",
        "ms-viewport",
    )
    assert mr.delivery_id == "k-7" and mr.wants_plan


def test_gitea_is_recognised_before_the_github_headers_it_also_sends() -> None:
    body = body_of("gitea-push.json")
    headers = {
        "x-gitea-event": "push",
        "x-github-event": "push",
        "x-gitea-delivery": "g-1",
        "x-gitea-signature": signed(body),
    }
    push = parse(verify(headers, body, SECRET), headers, body)
    assert (push.host, push.branch, push.repository) == ("gitea", "develop", "gitea/webhooks")


@pytest.mark.parametrize(
    "headers",
    [
        {"x-github-event": "push", "x-github-delivery": "d"},  # unsigned
        {"x-github-event": "push", "x-hub-signature-256": "sha256=" + "0" * 64},
        {"x-github-event": "push", "x-hub-signature-256": signed(b"{}")},  # no prefix
        {"x-gitea-event": "push", "x-gitea-signature": signed(b"{}", "other")},
        {"x-gitlab-event": "Push Hook", "x-gitlab-token": "guess"},
        {"x-gitlab-event": "Push Hook"},
        {"content-type": "application/json"},  # no host at all
    ],
)
def test_forged_and_unsigned_deliveries_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Forged):
        verify(headers, b"{}", SECRET)


def test_no_secret_configured_refuses_everything() -> None:
    body = b"{}"
    with pytest.raises(Forged):
        verify(
            {"x-github-event": "ping", "x-hub-signature-256": "sha256=" + signed(body, "")},
            body,
            "",
        )


@pytest.mark.parametrize(
    ("headers", "body", "why"),
    [
        ({"x-github-event": "push"}, b"{}", "no delivery id"),
        ({"x-github-event": "push", "x-github-delivery": "d"}, b"{not json", "not JSON"),
        ({"x-github-event": "push", "x-github-delivery": "d"}, b"[1]", "not a JSON object"),
        ({"x-github-event": "push", "x-github-delivery": "d"}, b'{"ref": "x"}', "after"),
        (
            {"x-github-event": "push", "x-github-delivery": "d"},
            b'{"ref": "refs/heads/m", "after": "$(rm -rf /)"}',
            "commit id",
        ),
    ],
)
def test_malformed_deliveries_say_why(headers: dict[str, str], body: bytes, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        parse("github", headers, body)


def test_recipe_text_cannot_inject_markdown_or_mentions() -> None:
    text = "unknown key `x` [click](http://evil) @org/team <img src=x> **bold**\n# title"
    escaped = escape_markdown(text)
    assert "@" not in escaped and "<" not in escaped and "\n" not in escaped
    assert "\\[click\\]\\(http://evil\\)" in escaped and "\\*\\*bold\\*\\*" in escaped
    assert "\\`x\\`" in escaped and "\\# title" in escaped
