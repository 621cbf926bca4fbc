"""The REST API of a real ``slipstream serve`` (HTTPS on loopback, its own certificate),
driven with plain HTTP: the OpenAPI document, one error shape, recipe problems with their
locations, plans, paging, the event stream, and refusals that change nothing.

Runs here are held for approval (planned with Terraform, never applied), so they cost a
plan each and start no machine; each test uses deployments of its own name, so the tests
share one server without depending on each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.served import Answer, Served, serve

RUNS = "/api/v1/runs"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = serve(tmp_path_factory.mktemp("rest") / "home", tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(served: Served) -> dict[str, str]:
    return {
        "root": served.user("root", admin=True),
        "alice": served.user("alice"),
        "bob": served.user("bob"),
    }


def bundle(name: str) -> dict[str, str]:
    """A deployment ``name`` of one small machine, as uploaded files."""
    return {
        "lib/box.yaml": "kind: component\nname: box\nimage: ubuntu-22.04\n",
        f"{name}.yaml": f"kind: deployment\nname: {name}\nnodes:\n  one: {{component: box}}\n",
    }


def held_run(served: Served, token: str, name: str) -> str:
    """A run of ``name`` held for approval, once it is planned."""
    made = served.call(
        "POST", RUNS, token, {"deployment": name, "files": bundle(name), "hold": True}
    )
    assert made.status == 201, made.raw
    assert made.headers["location"] == f"{RUNS}/{made.json['id']}"
    assert (made.json["state"], made.json["approval"]) == ("Initializing", "pending")
    ends = [
        m for m in served.stream(f"{RUNS}/{made.json['id']}/events/stream?until=settled", token)
    ]
    assert ends[-1][1] == "end"
    return str(made.json["id"])


def assert_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.raw
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert b"Traceback" not in answer.raw
    return body


def snapshot(served: Served, root: str, run_id: str) -> dict[str, Any]:
    """What a refusal must leave as it was: the run's document and every event."""
    doc = served.call("GET", f"{RUNS}/{run_id}?events=100000", root)
    assert doc.status == 200, doc.raw
    return dict(doc.json)


# -- the document and the error shape ----------------------------------------------------


def test_the_openapi_document_validates_and_documents_every_route(served: Served) -> None:
    answer = served.call("GET", "/api/v1/openapi.json")
    assert answer.status == 200
    spec = answer.json
    validate(spec)
    assert set(spec["paths"]) == {
        "/api/v1/plans",
        "/api/v1/repositories",
        "/api/v1/repositories/{name}",
        "/api/v1/repositories/{name}/sync",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/approve",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/runs/{run_id}/events/stream",
        "/api/v1/runs/{run_id}/params",
        "/api/v1/runs/{run_id}/reject",
        "/api/v1/runs/{run_id}/resume",
        "/api/v1/runs/{run_id}/scale",
        "/api/v1/runs/{run_id}/terminate",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/users",
        "/api/v1/users/{name}/rights",
        "/api/v1/whoami",
    }
    create = spec["paths"]["/api/v1/runs"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RunCreate"}
    assert spec["components"]["schemas"]["RunCreate"]["additionalProperties"] is False
    errors = [
        response["content"]["application/json"]["schema"]
        for path in spec["paths"].values()
        for operation in path.values()
        for status, response in operation["responses"].items()
        if status.startswith("4")
    ]
    assert errors and all(e == {"$ref": "#/components/schemas/Error"} for e in errors)
    assert "BearerAuth" in spec["components"]["securitySchemes"]


@pytest.mark.parametrize(
    ("method", "path", "who", "raw", "status", "code"),
    [
        ("GET", "/api/v1/whoami", None, None, 401, "unauthenticated"),
        ("GET", "/api/v1/whoami", "ss_bad", None, 401, "unauthenticated"),
        ("GET", "/api/v1/nowhere", "alice", None, 404, "not_found"),
        ("PUT", RUNS, "alice", b"{}", 405, "method_not_allowed"),
        ("GET", f"{RUNS}?limit=0", "alice", None, 400, "invalid"),
        ("POST", RUNS, "alice", b'{"deployment": "x", "colour": 1}', 400, "invalid"),
        ("POST", RUNS, "alice", b"{not json", 400, "invalid"),
        ("POST", RUNS, "alice", b"[" + b"0," * (9 * 2**20) + b"0]", 413, "too_large"),
        ("GET", f"{RUNS}/0123456789abcdef", "alice", None, 404, "not_found"),
        ("GET", f"{RUNS}/0123456789abcdef/events/stream", "alice", None, 404, "not_found"),
        ("GET", f"{RUNS}/0123456789abcdef/events/stream", None, None, 401, "unauthenticated"),
    ],
)
def test_every_error_has_one_shape(
    served: Served,
    tokens: dict[str, str],
    method: str,
    path: str,
    who: str | None,
    raw: bytes | None,
    status: int,
    code: str,
) -> None:
    token = tokens.get(who or "", who)
    body = assert_error(served.call(method, path, token, raw=raw), status, code)
    if status == 401:
        assert body["message"] in ("missing bearer token", "malformed token")
    if code == "invalid" and raw is not None and raw.startswith(b'{"'):
        assert body["details"] == {"json": {"colour": ["Unknown field."]}}


# -- recipes and plans --------------------------------------------------------------------


def test_recipe_problems_are_422_with_their_locations_and_store_nothing(
    served: Served, tokens: dict[str, str]
) -> None:
    before = served.call("GET", f"{RUNS}?limit=500", tokens["root"]).json["runs"]
    files = {
        "lib/box.yaml": "kind: component\nname: box\nimage: ubuntu-22.04\ncolour: red\n",
        "broken.yaml": "kind: deployment\nname: broken\nnodes:\n  one: {component: box}\n"
        "  two: {component: nobox}\n",
    }
    answer = served.call("POST", RUNS, tokens["alice"], {"deployment": "broken", "files": files})
    body = assert_error(answer, 422, "recipe_invalid")
    assert [(p["file"], p["line"], p["column"]) for p in body["details"]["problems"]] == [
        ("broken.yaml", 5, 20),
        ("lib/box.yaml", 4, 1),
    ]
    assert body["details"]["problems"][0]["message"].startswith("unknown component `nobox`")
    assert "colour" in body["details"]["problems"][1]["message"]
    outside = served.call("POST", RUNS, tokens["alice"], {"deployment": "/etc/passwd.yaml"})
    assert assert_error(outside, 422, "recipe_invalid")["details"]["problems"][0]["file"] == (
        "/etc/passwd.yaml"
    )
    sneaky = {"deployment": "x", "files": {"../x.yaml": "kind: component\n"}}
    assert_error(served.call("POST", RUNS, tokens["alice"], sneaky), 422, "recipe_invalid")
    assert served.call("GET", f"{RUNS}?limit=500", tokens["root"]).json["runs"] == before
    assert not (served.home.parent / "x.yaml").exists()


def test_a_plan_counts_per_cloud_and_node_and_stores_no_run(
    served: Served, tokens: dict[str, str]
) -> None:
    before = served.call("GET", f"{RUNS}?limit=500", tokens["root"]).json["runs"]
    answer = served.call(
        "POST", "/api/v1/plans", tokens["bob"], {"deployment": "webapp", "multiplicity": {"web": 3}}
    )
    assert answer.status == 200, answer.raw
    local = answer.json["clouds"]["local"]
    assert (local["add"], local["change"], local["destroy"]) == (5, 0, 0)
    assert local["nodes"] == {
        "db": {"add": 1, "change": 0, "destroy": 0},
        "lb": {"add": 1, "change": 0, "destroy": 0},
        "web": {"add": 3, "change": 0, "destroy": 0},
    }
    assert (answer.json["deployment"], answer.json["user"]) == ("webapp", "bob")
    assert served.call("GET", f"{RUNS}?limit=500", tokens["root"]).json["runs"] == before
    assert list((served.home / "plans").iterdir()) == []
    refused = served.call("POST", "/api/v1/plans", tokens["bob"], {"deployment": "nothing-here"})
    assert assert_error(refused, 422, "recipe_invalid")["details"]["problems"][0]["message"] == (
        "unknown deployment `nothing-here`: no nothing-here.yaml under the recipe root or in "
        "templates/"
    )


# -- listing and the event stream --------------------------------------------------------


def test_runs_are_listed_newest_first_filtered_and_paged(
    served: Served, tokens: dict[str, str]
) -> None:
    made = [held_run(served, tokens["alice"], "pager") for _ in range(3)]
    alice = tokens["alice"]
    first = served.call("GET", f"{RUNS}?deployment=pager&limit=2", alice).json
    assert [r["id"] for r in first["runs"]] == made[::-1][:2]
    assert first["next"] is not None
    rest = served.call("GET", f"{RUNS}?deployment=pager&limit=2&cursor={first['next']}", alice)
    assert ([r["id"] for r in rest.json["runs"]], rest.json["next"]) == ([made[0]], None)
    assert served.call("GET", f"{RUNS}?deployment=pager&user=bob", alice).json["runs"] == []
    assert served.call("GET", f"{RUNS}?deployment=pager", tokens["bob"]).json["runs"] == []
    for run_id in made:
        assert served.call("POST", f"{RUNS}/{run_id}/terminate", alice).status == 202
    for run_id in made:
        list(served.stream(f"{RUNS}/{run_id}/events/stream", alice))  # ends once over
    over = served.call("GET", f"{RUNS}?deployment=pager&state=Cancelled&state=Done", alice)
    assert sorted(r["id"] for r in over.json["runs"]) == sorted(made)


def test_the_event_stream_resumes_after_the_last_event_id(
    served: Served, tokens: dict[str, str]
) -> None:
    alice = tokens["alice"]
    run_id = held_run(served, alice, "streamed")
    path = f"{RUNS}/{run_id}/events/stream?until=settled"
    whole = list(served.stream(path, alice))
    ids = [int(i) for i, event, _ in whole if event == "message"]
    assert ids == sorted(ids) and len(ids) >= 3
    assert whole[-1][1] == "end" and '"state": "Initializing"' in whole[-1][2]
    resumed = list(served.stream(path, alice, {"Last-Event-ID": str(ids[1])}))
    assert [int(i) for i, event, _ in resumed if event == "message"] == ids[2:]
    after = list(served.stream(f"{path}&after={ids[-1]}", alice))
    assert [event for _, event, _ in after] == ["end"]
    paged = served.call("GET", f"{RUNS}/{run_id}/events?after={ids[0]}&limit=1", alice).json
    assert [e["id"] for e in paged["events"]] == [ids[1]]
    doc = served.call("GET", f"{RUNS}/{run_id}?events=1", alice).json
    assert ([e["id"] for e in doc["events"]], doc["events_before"]) == ([ids[-1]], len(ids) - 1)
    bad = served.call("GET", path, alice, headers={"Last-Event-ID": "x1"})
    assert_error(bad, 400, "invalid")
    assert served.call("POST", f"{RUNS}/{run_id}/reject", tokens["root"]).status == 202


# -- refusals -----------------------------------------------------------------------------


def test_a_member_cannot_touch_another_members_run_and_nothing_changes(
    served: Served, tokens: dict[str, str]
) -> None:
    alice, bob, root = tokens["alice"], tokens["bob"], tokens["root"]
    run_id = held_run(served, alice, "guarded")
    before = snapshot(served, root, run_id)
    run = f"{RUNS}/{run_id}"
    for method, path, right in [
        ("GET", run, "view"),
        ("GET", f"{run}/params", "view"),
        ("GET", f"{run}/events", "view"),
        ("GET", f"{run}/events/stream", "view"),
        ("POST", f"{run}/terminate", "deploy"),
        ("POST", f"{run}/resume", "deploy"),
        ("POST", f"{run}/approve", "approve"),
        ("POST", f"{run}/reject", "approve"),
    ]:
        body = assert_error(served.call(method, path, bob), 403, "forbidden")
        assert body["details"] == {"right": right, "scope": "guarded"}
        assert body["message"] == f"bob lacks the `{right}` right on deployment `guarded`"
    # owners do not approve their own runs
    own = assert_error(served.call("POST", f"{run}/approve", alice), 403, "forbidden")
    assert own["details"]["right"] == "approve"
    assert run_id not in [r["id"] for r in served.call("GET", RUNS, bob).json["runs"]]
    as_client = served.client(bob, "destroy", run_id)
    assert (as_client.returncode, as_client.stdout, as_client.stderr) == (
        1,
        "",
        "destroy: bob lacks the `deploy` right on deployment `guarded`\n",
    )
    assert snapshot(served, root, run_id) == before

    grant = {"right": "approve", "deployment": "guarded"}
    made = served.call("POST", "/api/v1/users/bob/rights", root, grant)
    assert (made.status, made.json) == (201, {"user": "bob", **grant})
    try:
        assert served.call("GET", run, bob).status == 200  # approve comes with view
        assert_error(served.call("POST", f"{run}/terminate", bob), 403, "forbidden")
        rejected = served.call("POST", f"{run}/reject", bob)
        assert (rejected.status, rejected.json["id"]) == (202, run_id)
        end = list(served.stream(f"{run}/events/stream", bob))[-1]
        assert end[1] == "end" and '"state": "Cancelled"' in end[2]
        assert_error(served.call("POST", f"{run}/approve", bob), 409, "conflict")
    finally:
        revoked = served.call(
            "DELETE", "/api/v1/users/bob/rights?right=approve&deployment=guarded", root
        )
        assert revoked.status == 204
    assert_error(served.call("GET", run, bob), 403, "forbidden")


def test_members_administer_nothing_but_their_own_tokens(
    served: Served, tokens: dict[str, str]
) -> None:
    bob, root = tokens["bob"], tokens["root"]
    users_before = served.call("GET", "/api/v1/users", root).json
    tokens_before = served.call("GET", "/api/v1/tokens", root).json
    for method, path, body in [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"name": "mallory", "admin": True}),
        ("POST", "/api/v1/users/bob/rights", {"right": "deploy", "deployment": "*"}),
        ("DELETE", "/api/v1/users/alice/rights?right=view&deployment=x", None),
        ("POST", "/api/v1/tokens", {"user": "alice"}),
        ("GET", "/api/v1/tokens?user=alice", None),
    ]:
        refused = assert_error(served.call(method, path, bob, body), 403, "forbidden")
        assert refused["details"] == {"right": "admin", "scope": "*"}
        assert refused["message"] == "bob is not an administrator"
    alices = [t for t in tokens_before["tokens"] if t["user"] == "alice"]
    assert_error(served.call("DELETE", f"/api/v1/tokens/{alices[0]['id']}", bob), 404, "not_found")
    assert served.call("GET", "/api/v1/users", root).json == users_before
    after = served.call("GET", "/api/v1/tokens", root).json["tokens"]
    assert [(t["id"], t["revoked_at"]) for t in after] == [
        (t["id"], t["revoked_at"]) for t in tokens_before["tokens"]
    ]
    mine = served.call("GET", "/api/v1/tokens", bob).json["tokens"]
    assert {t["user"] for t in mine} == {"bob"}
    assert all("token" not in t and "secret_hash" not in t for t in mine)


def test_expired_and_revoked_tokens_are_refused_with_the_reason(
    served: Served, tokens: dict[str, str], tmp_path: Path
) -> None:
    alice = tokens["alice"]
    short = served.call("POST", "/api/v1/tokens", alice, {"expires": "1s", "description": "short"})
    assert short.status == 201, short.raw
    assert short.json["token"].startswith(f"ss_{short.json['id']}_")
    assert served.call("GET", "/api/v1/whoami", short.json["token"]).json["name"] == "alice"
    time.sleep(1.2)
    expired = assert_error(served.call("GET", RUNS, short.json["token"]), 401, "unauthenticated")
    assert expired["message"] == f"token {short.json['id']} has expired"

    other = served.call("POST", "/api/v1/tokens", alice, {"description": "to revoke"}).json
    assert served.call("DELETE", f"/api/v1/tokens/{other['id']}", alice).status == 204
    revoked = assert_error(served.call("GET", RUNS, other["token"]), 401, "unauthenticated")
    assert revoked["message"] == f"token {other['id']} was revoked"
    assert_error(served.call("DELETE", f"/api/v1/tokens/{other['id']}", alice), 409, "conflict")
    listed = served.client(other["token"], "list")
    assert (listed.returncode, listed.stderr) == (1, f"list: token {other['id']} was revoked\n")


def test_a_scale_refused_is_409_naming_the_state_or_400_and_changes_nothing(
    served: Served, tokens: dict[str, str]
) -> None:
    plain = held_run(served, tokens["alice"], "scaleless")
    files = bundle("scaly")
    files["scaly.yaml"] = files["scaly.yaml"].replace("nodes:", "scalable: true\nnodes:")
    made = served.call(
        "POST", RUNS, tokens["alice"], {"deployment": "scaly", "files": files, "hold": True}
    )
    assert made.status == 201, made.raw
    scaly = str(made.json["id"])
    list(served.stream(f"{RUNS}/{scaly}/events/stream?until=settled", tokens["alice"]))
    before = snapshot(served, tokens["root"], scaly)
    answer = served.call("POST", f"{RUNS}/{plain}/scale", tokens["alice"], {"changes": ["one=+1"]})
    assert "is not scalable" in assert_error(answer, 409, "conflict")["message"]
    answer = served.call("POST", f"{RUNS}/{scaly}/scale", tokens["alice"], {"changes": ["one=+1"]})
    refusal = assert_error(answer, 409, "conflict")["message"]
    assert "is Initializing: only a run in Ready" in refusal
    answer = served.call("POST", f"{RUNS}/{scaly}/scale", tokens["alice"], {"changes": ["one=2"]})
    assert "NODE=+N" in assert_error(answer, 400, "invalid")["message"]
    answer = served.call("POST", f"{RUNS}/{scaly}/scale", tokens["bob"], {"changes": ["one=+1"]})
    assert answer.status in (403, 404), answer.raw
    assert snapshot(served, tokens["root"], scaly) == before
