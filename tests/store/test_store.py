"""The run store on SQLite (the embedded default) and on a real PostgreSQL (scaled mode).

The PostgreSQL server is the one CI and development machines run on 127.0.0.1:5432
(trust auth, database ``test``); each test gets a schema of its own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.store.runstore import NewInstance, NewRun, RunStore

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    if request.param == "sqlite":
        yield RunStore.open(f"sqlite:///{tmp_path}/runs.db")
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    opened = RunStore.open(f"{PG}?options=-csearch_path%3D{schema}")
    try:
        yield opened
    finally:
        opened.engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def new_run(store: RunStore, run_id: str = "r1") -> None:
    store.create_run(
        NewRun(run_id, "webapp", "alice", "on-success", 60, "{}"),
        [
            NewInstance("web.1", "web", 1, "local", f"hash-{run_id}-1"),
            NewInstance("web.2", "web", 2, "local", f"hash-{run_id}-2"),
        ],
        {"web:ids": "1,2"},
    )


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
