"""The run store's fixtures: an empty database on SQLite and on a real PostgreSQL.

The PostgreSQL server is the one CI and development machines run on 127.0.0.1:5432
(trust auth, database ``test``); each test gets a schema of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from engine.store.runstore import NewInstance, NewRun, RunStore

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

OpenStore = Callable[..., RunStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def open_store(url: str) -> Iterator[OpenStore]:
    """Opens stores on the test's database (``url`` by default); closes them after."""
    opened: list[RunStore] = []

    def open_(at: str = url) -> RunStore:
        opened.append(RunStore.open(at))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> RunStore:
    return open_store()


def new_run(store: RunStore, run_id: str = "r1") -> None:
    store.create_run(
        NewRun(run_id, "webapp", "alice", "on-success", 60, "{}"),
        [
            NewInstance("web.1", "web", 1, "local", f"hash-{run_id}-1"),
            NewInstance("web.2", "web", 2, "local", f"hash-{run_id}-2"),
        ],
        {"web:ids": "1,2"},
    )
