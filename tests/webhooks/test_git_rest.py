"""Repositories as a REST resource: admins register, sync and remove; members read."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gitops.gitrepo import Origin
from tests.served import serve
from tests.webhooks.test_git_hooks import wait_for


def test_repositories_over_rest(tmp_path: Path) -> None:
    served = serve(tmp_path / "home", tls=False)
    try:
        admin, member = served.user("root", admin=True), served.user("bob")
        origin = Origin(tmp_path / "git")
        sha = origin.commit({"slipstream.yaml": "deployments: {}\n"}, "empty")
        origin.push()
        body = {"url": str(origin.bare), "name": "infra", "secret_env": "HOOK_SECRET"}
        refused = served.call("POST", "/api/v1/repositories", member, body)
        assert refused.status == 403 and refused.json["code"] == "forbidden"
        made = served.call("POST", "/api/v1/repositories", admin, body)
        assert made.status == 201, made.raw
        assert made.headers["location"] == "/api/v1/repositories/infra"
        assert (made.json["branch"], made.json["last_commit"]) == ("main", "")
        again = served.call("POST", "/api/v1/repositories", admin, body)
        assert again.status == 409 and "already" in again.json["message"]
        bad = served.call("POST", "/api/v1/repositories", admin, {**body, "secret_env": "A B"})
        assert bad.status == 400
        listed = served.call("GET", "/api/v1/repositories", member)
        assert [r["name"] for r in listed.json["repositories"]] == ["infra"]

        assert served.call("POST", "/api/v1/repositories/infra/sync", member).status == 403
        queued = served.call("POST", "/api/v1/repositories/infra/sync", admin)
        assert (queued.status, queued.json["status"]) == (202, "queued")
        wait_for(
            "the sync",
            lambda: (
                served.call("GET", "/api/v1/repositories/infra", member).json["last_commit"] == sha
            ),
            seconds=120,
        )
        assert served.call("DELETE", "/api/v1/repositories/infra", admin).status == 204
        gone = served.call("GET", "/api/v1/repositories/infra", member)
        assert gone.status == 404 and "infra" in gone.json["message"]
        assert json.loads(served.call("GET", "/api/v1/repositories", admin).raw) == {
            "repositories": []
        }
    finally:
        served.stop()
