"""The run store on SQLite (the embedded default) and on a real PostgreSQL (scaled mode)."""

from __future__ import annotations

import threading

from engine.store.runstore import RunStore
from tests.store.conftest import new_run


def test_run_state_moves_only_from_the_expected_state(store: RunStore) -> None:
    new_run(store)
    assert store.get_run("r1").state == "Initializing"  # type: ignore[union-attr]
    assert store.set_state("r1", "Provisioning", expect="Initializing")
    assert not store.set_state("r1", "Executing", expect="Initializing")
    assert store.get_run("r1").state == "Provisioning"  # type: ignore[union-attr]
    assert store.get_param("r1", "ss:state") == "Provisioning"


def test_first_abort_message_wins(store: RunStore) -> None:
    new_run(store)
    assert store.set_abort("r1", "first", cancelled=False)
    assert not store.set_abort("r1", "second", cancelled=True)
    run = store.get_run("r1")
    assert run is not None and (run.abort_message, run.cancelled) == ("first", False)
    assert store.get_param("r1", "ss:abort") == "first"


def test_params_votes_events_and_tokens(store: RunStore) -> None:
    new_run(store)
    new_run(store, "r2")
    store.set_param("r1", "web.1:url", "a")
    store.set_param("r1", "web.1:url", "b")
    store.set_params("r1", {"web.2:url": "c", "web.1:hostname": "h"})
    assert store.params("r1") == {
        "web:ids": "1,2",
        "web.1:url": "b",
        "web.2:url": "c",
        "web.1:hostname": "h",
    }
    assert store.get_param("r2", "web.1:url") is None
    store.vote("r1", "web.1", "Executing")
    store.vote("r1", "web.1", "Executing")
    assert store.voters("r1", "Executing") == {"web.1"}
    first = store.add_event("r1", "state", "one", {"n": 1})
    second = store.add_event("r1", "state", "two")
    assert [e.message for e in store.events("r1")] == ["one", "two"]
    assert [e.message for e in store.events("r1", after=first)] == ["two"]
    assert second > first
    assert store.instance_by_token("hash-r2-2") == ("r2", "web.2")
    assert store.instance_by_token("nope") is None


def test_concurrent_writers_lose_nothing(store: RunStore) -> None:
    new_run(store)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.set_param("r1", f"web.1:k{n}-{i}", str(i))
                store.add_event("r1", "agent", f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([k for k in store.params("r1") if k.startswith("web.1:k")]) == 200
    assert len(store.events("r1")) == 200


def test_migrating_twice_is_harmless(store: RunStore) -> None:
    new_run(store)
    store.migrate()
    assert store.get_run("r1") is not None


def test_head_revision_constant_matches_the_migration_scripts(store: RunStore) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from engine.store.runstore import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
    assert store.revision() == HEAD_REVISION


def test_runs_instances_reports_and_checkpoints_read_back_typed(store: RunStore) -> None:
    new_run(store)
    new_run(store, "r2")
    assert [r.id for r in store.list_runs()] == ["r2", "r1"]
    assert [r.id for r in store.list_runs(limit=1)] == ["r2"]
    store.set_checkpoint("r1", "applied")
    store.set_checkpoint("r2", "destroy-failed", "boom")
    first, second = store.get_run("r1"), store.get_run("r2")
    assert first is not None and (first.checkpoint, first.error) == ("applied", None)
    assert second is not None and (second.checkpoint, second.error) == ("destroy-failed", "boom")
    assert first.cancelled is False and store.get_run("nope") is None
    assert store.set_abort("r2", "stop", cancelled=True)
    assert store.get_run("r2").cancelled is True  # type: ignore[union-attr]
    assert store.run_flags("r2") == ("Initializing", "stop")
    assert store.run_flags("nope") is None
    assert store.instances("r1") == [
        {
            "run_id": "r1",
            "name": f"web.{i}",
            "node": "web",
            "idx": i,
            "cloud": "local",
            "token_hash": f"hash-r1-{i}",
            "removed": False,
        }
        for i in (1, 2)
    ]
    store.retire_instances("r1")
    assert [i["removed"] for i in store.instances("r1")] == [True, True]
    assert store.instance_by_token("hash-r1-1") is None
    assert store.instance_by_token("hash-r2-1") == ("r2", "web.1")
    store.add_report("r1", "web.2", "/reports/a.tgz", 10)
    store.add_report("r1", "web.1", "/reports/b.tgz", 20)
    store.add_report("r1", "web.2", "/reports/c.tgz", 30)
    assert [(r["instance"], r["path"], r["size"]) for r in store.reports("r1")] == [
        ("web.1", "/reports/b.tgz", 20),
        ("web.2", "/reports/c.tgz", 30),
    ]
    assert store.votes_by_state("r1") == {}
    store.vote("r1", "web.2", "Executing")
    store.vote("r1", "web.1", "Provisioning")
    assert store.votes_by_state("r1") == {"Executing": {"web.2"}, "Provisioning": {"web.1"}}
    assert store.events("r1") == []
    store.add_event("r1", "x", "y", {"b": 2, "a": [1]})
    assert store.events("r1")[0].data == {"a": [1], "b": 2}
