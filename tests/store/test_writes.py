"""Writes that do not block, the abort fence, and failures inside a shared batch.

Each runs on SQLite and on the real PostgreSQL. ``writer_held`` parks the store's writer
thread in an ``after`` callback, so that what is queued meanwhile commits as one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import pytest

from engine.errors import StoreError
from engine.store.runstore import FENCED_STATES, Fenced, RunStore
from tests.store.conftest import OpenStore, new_run

WAIT_S = 60


@contextmanager
def writer_held(store: RunStore) -> Iterator[None]:
    running, release = threading.Event(), threading.Event()

    def hold(_: None) -> None:
        running.set()
        release.wait(WAIT_S)

    blocker = store.put_params("r1", {"web.1:held": "yes"}, after=hold)
    assert running.wait(WAIT_S)
    try:
        yield
    finally:
        release.set()
        blocker.result(WAIT_S)


def test_500_concurrent_put_params_commit_and_every_future_resolves(store: RunStore) -> None:
    new_run(store)
    n = 500
    futures: list[Future[None] | None] = [None] * n
    start = threading.Barrier(n)

    def put(i: int) -> None:
        start.wait()
        futures[i] = store.put_params("r1", {f"web.1:k{i}": str(i)})

    with writer_held(store):
        threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not any(f.done() for f in futures if f is not None)  # queued, not committed
    assert [f.result(WAIT_S) if f else "missing" for f in futures] == [None] * n
    stored = {k: v for k, v in store.params("r1").items() if k.startswith("web.1:k")}
    assert stored == {f"web.1:k{i}": str(i) for i in range(n)}


def test_after_runs_once_committed_and_in_commit_order(store: RunStore) -> None:
    new_run(store)
    seen: list[tuple[int, int]] = []
    unstored: list[str] = []

    def writer(t: int) -> None:
        futures = []
        for i in range(40):

            def after(_: None, t: int = t, i: int = i) -> None:
                if store.get_param("r1", f"web.1:k{t}-{i}") != str(i):
                    unstored.append(f"{t}-{i}")  # after ran before the commit
                seen.append((t, i))

            values = {"web.1:last": f"{t}-{i}", f"web.1:k{t}-{i}": str(i)}
            futures.append(store.put_params("r1", values, after=after))
        for future in futures:
            future.result(WAIT_S)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unstored == []
    assert len(seen) == 8 * 40
    for t in range(8):  # each thread's writes were acknowledged in the order it made them
        assert [i for tt, i in seen if tt == t] == list(range(40))
    last_t, last_i = seen[-1]  # the last callback is the last commit: the value that stuck
    assert store.get_param("r1", "web.1:last") == f"{last_t}-{last_i}"


def test_state_and_abort_futures(store: RunStore) -> None:
    new_run(store)
    moved: list[bool] = []
    assert store.move_state("r1", "Provisioning", after=moved.append).result(WAIT_S) is True
    assert (
        store.move_state("r1", "Ready", expect="Initializing", after=moved.append).result(WAIT_S)
        is False
    )
    assert moved == [True, False]
    assert store.get_param("r1", "ss:state") == "Provisioning"
    raised: list[bool] = []
    first = store.put_abort("r1", "first", cancelled=True, after=raised.append)
    second = store.put_abort("r1", "second", after=raised.append)
    assert (first.result(WAIT_S), second.result(WAIT_S), raised) == (True, False, [True, False])
    run = store.get_run("r1")
    assert run is not None and (run.abort_message, run.cancelled) == ("first", True)


def test_a_fenced_write_is_refused_once_another_store_aborted_the_run(
    url: str, open_store: OpenStore
) -> None:
    mine = open_store()
    # The other process's store, opened with the plain postgresql:// form on PostgreSQL.
    other = open_store(url.replace("postgresql+psycopg://", "postgresql://"))
    new_run(mine)
    mine.put_params("r1", {"web.1:url": "a"}, fenced=True).result(WAIT_S)
    assert other.set_abort("r1", "db.1 failed")
    with pytest.raises(Fenced) as refused:
        mine.put_params("r1", {"web.1:url": "b", "web.1:new": "c"}, fenced=True).result(WAIT_S)
    assert (refused.value.abort, refused.value.state) == ("db.1 failed", "Initializing")
    with pytest.raises(Fenced):
        mine.put_vote("r1", "web.1", "Provisioning", fenced=True).result(WAIT_S)
    assert mine.params("r1") == {"web:ids": "1,2", "web.1:url": "a", "ss:abort": "db.1 failed"}
    assert mine.voters("r1", "Provisioning") == set()
    mine.put_params("r1", {"web.1:new": "d"}).result(WAIT_S)  # the engine's own writes go on
    assert mine.get_param("r1", "web.1:new") == "d"


@pytest.mark.parametrize("final", FENCED_STATES)
def test_a_fenced_write_is_refused_once_the_run_is_over(final: str, open_store: OpenStore) -> None:
    mine, other = open_store(), open_store()
    new_run(mine)
    other.set_state("r1", "Ready")
    mine.put_vote("r1", "web.1", "Ready", fenced=True).result(WAIT_S)  # Ready is not fenced
    other.set_state("r1", final)
    with pytest.raises(Fenced) as refused:
        mine.put_vote("r1", "web.2", "Ready", fenced=True).result(WAIT_S)
    assert (refused.value.state, refused.value.abort) == (final, None)
    with pytest.raises(Fenced):
        mine.put_params("r1", {"web.2:url": "x"}, fenced=True).result(WAIT_S)
    assert mine.voters("r1", "Ready") == {"web.1"}
    assert mine.get_param("r1", "web.2:url") is None


def test_fenced_refusals_in_a_batch_leave_the_rest_of_it_alone(store: RunStore) -> None:
    new_run(store)
    new_run(store, "r2")
    store.set_abort("r2", "stop")
    with writer_held(store):
        live = [store.put_params("r1", {f"web.1:k{i}": "v"}, fenced=True) for i in range(50)]
        dead = [store.put_params("r2", {f"web.1:k{i}": "v"}, fenced=True) for i in range(50)]
    assert [f.result(WAIT_S) for f in live] == [None] * 50
    assert all(isinstance(f.exception(WAIT_S), Fenced) for f in dead)
    assert len([k for k in store.params("r1") if k.startswith("web.1:k")]) == 50
    assert [k for k in store.params("r2") if k.startswith("web.1:k")] == []


def test_a_bad_write_in_a_batch_fails_only_its_own_future(store: RunStore) -> None:
    new_run(store)
    order: list[int] = []
    with writer_held(store):
        good = [
            store.put_params("r1", {f"web.1:k{i}": str(i)}, after=lambda _, i=i: order.append(i))
            for i in range(60)
        ]
        bad = store.put_params("no-such-run", {"web.1:k": "x"})  # breaks the foreign key
        good += [
            store.put_params("r1", {f"web.1:k{i}": str(i)}, after=lambda _, i=i: order.append(i))
            for i in range(60, 120)
        ]
    failed = bad.exception(WAIT_S)
    assert isinstance(failed, StoreError) and isinstance(failed.__cause__, store.database.error)
    assert [f.result(WAIT_S) for f in good] == [None] * 120
    assert order == list(range(120))
    assert len([k for k in store.params("r1") if k.startswith("web.1:k")]) == 120
    assert store.params("no-such-run") == {}


def test_a_failing_after_fails_its_future_but_not_the_write_or_the_writer(
    store: RunStore,
) -> None:
    new_run(store)
    # A write waited for on the writer thread would wait for itself forever.
    nested = store.put_params("r1", {"web.1:a": "1"}, after=lambda _: store.vote("r1", "x", "y"))
    with pytest.raises(RuntimeError, match="never commit"):
        nested.result(WAIT_S)
    assert store.get_param("r1", "web.1:a") == "1"
    assert store.voters("r1", "y") == set()
    store.set_param("r1", "web.1:b", "2")
    assert store.get_param("r1", "web.1:b") == "2"


def test_a_write_cancelled_before_its_batch_is_skipped(store: RunStore) -> None:
    new_run(store)
    with writer_held(store):
        dropped = store.put_params("r1", {"web.1:dropped": "x"})
        kept = store.put_params("r1", {"web.1:kept": "y"})
        assert dropped.cancel()
    assert kept.result(WAIT_S) is None
    assert store.get_param("r1", "web.1:dropped") is None
    assert store.get_param("r1", "web.1:kept") == "y"
