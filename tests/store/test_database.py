"""The store's connections: what opening it imports, private files, bounded connections."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from engine.store.database import PostgresDatabase
from engine.store.runstore import RunStore
from tests.store.conftest import PG_ADMIN, OpenStore, new_run

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "alembic", "psycopg")


def heavy_loaded_by(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True, text=True
    )
    loaded = {name.split(".")[0] for name in out.stdout.split()}
    return [name for name in HEAVY if name in loaded]


def test_importing_the_store_loads_no_sqlalchemy_alembic_or_psycopg() -> None:
    assert heavy_loaded_by("import engine.store.runstore") == []


def test_only_a_schema_behind_the_latest_loads_sqlalchemy_and_alembic(tmp_path: Path) -> None:
    def open_and_list(url: str) -> str:
        return (
            "from engine.store.runstore import RunStore\n"
            f"assert RunStore.open({url!r}).list_runs() == []"
        )

    current = f"sqlite:///{tmp_path}/current/runs.db"
    RunStore.open(current).close()
    assert heavy_loaded_by(open_and_list(current)) == []
    new = f"sqlite:///{tmp_path}/new/runs.db"
    assert heavy_loaded_by(open_and_list(new)) == ["sqlalchemy", "alembic"]


def test_the_sqlite_files_and_their_folder_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    umask = os.umask(0o022)
    try:
        store = RunStore.open(f"sqlite:///{home}/runs.db")
        new_run(store)
        assert store.get_run("r1") is not None  # a reading connection too
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in home.iterdir()}
        store.close()
    finally:
        os.umask(umask)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert modes == {
        "runs.db": 0o600,
        "runs.db-wal": 0o600,
        "runs.db-shm": 0o600,
        "runs.db.migrate.lock": 0o600,
    }


def test_sqlite_readers_are_handed_on_when_their_thread_ends(tmp_path: Path) -> None:
    store = RunStore.open(f"sqlite:///{tmp_path}/runs.db")
    new_run(store)
    before = store.database.opened
    for _ in range(30):
        reader = threading.Thread(target=store.get_run, args=("r1",))
        reader.start()
        reader.join()
    assert store.database.opened - before == 1
    store.close()


def test_an_in_memory_store_serves_many_threads() -> None:
    store = RunStore.open("sqlite://")
    new_run(store)
    wrong: list[str] = []

    def work(n: int) -> None:
        for i in range(25):
            store.set_param("r1", f"web.1:k{n}", str(i))
            if store.get_param("r1", f"web.1:k{n}") != str(i):
                wrong.append(f"{n}:{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert {k: v for k, v in store.params("r1").items() if k != "web:ids"} == {
        f"web.1:k{n}": "24" for n in range(8)
    }
    store.close()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_postgresql_reads_share_a_small_bounded_pool(open_store: OpenStore) -> None:
    store = open_store()
    new_run(store)
    start = threading.Barrier(40)
    missing: list[int] = []

    def read(n: int) -> None:
        start.wait()
        for _ in range(10):
            if store.get_run("r1") is None:
                missing.append(n)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    assert isinstance(store.database, PostgresDatabase)
    assert store.database.opened <= 8 + 1  # the readers and the writer


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_postgresql_connections_dropped_by_the_server_are_replaced(
    url: str, open_store: OpenStore
) -> None:
    name = f"ss_{uuid.uuid4().hex[:10]}"
    store = open_store(f"{url}&application_name={name}")
    new_run(store)
    assert store.get_run("r1") is not None
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (name,),
        ).fetchone()
    assert row is not None and row[0] >= 2  # the writer and a reader
    assert store.get_run("r1") is not None
    store.set_param("r1", "web.1:url", "after the restart")
    assert store.get_param("r1", "web.1:url") == "after the restart"
