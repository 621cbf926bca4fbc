"""A run's files travel through the store to workers on other hosts; one job of a run at
a time across workers (the run's lock in PostgreSQL). Real PostgreSQL, a schema per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.runs.locks import RunLocked
from engine.scaled import runfiles
from engine.scaled.queue import run_lock
from engine.store.runstore import RunStore
from tests.scaled.cluster import PG_ADMIN, pg_reachable


@pytest.fixture
def store() -> Iterator[RunStore]:
    why = pg_reachable()
    if why is not None:
        pytest.fail(why)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        opened = RunStore.open(
            f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        )
        try:
            yield opened
        finally:
            opened.close()
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_files_of_a_run_reach_another_host(store: RunStore, tmp_path: Path) -> None:
    here, there = tmp_path / "replica", tmp_path / "worker"
    run = here / "runs" / "r1"
    (run / "tf" / "local").mkdir(parents=True)
    (run / "tokens").mkdir()
    (run / "tf" / "local" / "main.tf.json").write_text('{"resource": {}}\n')
    (run / "tf" / "local" / "plan.bin").write_bytes(b"\0plan")  # never kept
    (run / "tokens" / "web.1").write_text("s3cret\n")
    assert runfiles.save(store, here, "r1") == 2
    assert runfiles.save(store, here, "r1") == 2  # again: nothing changes
    restored = runfiles.restore(store, there, "r1")
    assert restored == ["tf/local/main.tf.json", "tokens/web.1"]
    token = there / "runs" / "r1" / "tokens" / "web.1"
    assert token.read_text() == "s3cret\n" and token.stat().st_mode & 0o777 == 0o600
    assert not (there / "runs" / "r1" / "tf" / "local" / "plan.bin").exists()
    assert runfiles.restore(store, there, "r1") == []  # what is there is left alone
    runfiles.forget_tokens(store, "r1")
    token.unlink()
    assert runfiles.restore(store, there, "r1") == []


def test_a_restored_path_never_leaves_the_run_folder(store: RunStore, tmp_path: Path) -> None:
    store.write(
        lambda conn: conn.execute(
            "INSERT INTO run_files (run_id, path, body) VALUES (?, ?, ?)",
            ("r1", "../../escape", "x"),
        )
    )
    assert runfiles.restore(store, tmp_path, "r1") == []
    assert not (tmp_path / "escape").exists()


def test_one_job_of_a_run_at_a_time_across_workers(store: RunStore) -> None:
    with run_lock(store, "r1"):
        with pytest.raises(RunLocked, match="driven by another worker"), run_lock(store, "r1"):
            pass
        with run_lock(store, "r2"):  # another run goes on
            pass
    with run_lock(store, "r1"):  # let go with its connection
        pass
