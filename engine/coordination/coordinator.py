"""Coordinator: runtime parameters, barriers and the abort fence of running deployments.

Agent requests arrive on the server's event loop (the ``async`` methods) and never block
it: values are answered from the :class:`RunCache`, waits are shared futures of the
:class:`Hub`, and writes are handed to the store's group-commit thread, awaited, and
reach the cache in commit order. The run driver uses the same object from its own thread
(the plain methods).

Barriers are released in the write path: the vote that completes one moves the state
and wakes every state waiter at once; nothing polls. The abort fence holds in the store's
transaction, so a run aborted by another process refuses writes at once.

Example (not run: it needs a store)::

        coordinator = Coordinator(store, Hub())
        await coordinator.put(run_id, "db.1", "url", "pg://db")
        await coordinator.get(run_id, "web.1", "db_url", wait_s=30)
        # b'{"key": "db.1:url", "value": "pg://db"}'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, TypeVar

from engine.coordination import keys
from engine.coordination.hub import TIMED_OUT, Hub
from engine.coordination.refusals import Aborted, BadRequest, NotFound, TooMany
from engine.coordination.runcache import ARMED_BY_ENGINE, NEXT_STATE, RunCache
from engine.store.runstore import Fenced, RunStore

MAX_VALUE_BYTES = 4096
MAX_WAIT_S = 30.0
#: Events one instance may post to its run's log; later ones are refused (429).
MAX_EVENTS_PER_INSTANCE = 1000
STATES = (
    "Initializing",
    "Provisioning",
    "Executing",
    "SendingReports",
    "Ready",
    "Finalizing",
    "Done",
    "Aborted",
    "Cancelled",
)
TERMINAL = ("Done", "Aborted", "Cancelled")
#: How long a token's owner is remembered (another process may retire it).
OWNER_TTL_S = 10.0
#: Hub keys of the state watch (``GET /state``) and of votes, beside parameter keys.
STATE_WATCH = "#state"
VOTES = "#votes"

T = TypeVar("T")


def token_hash(token: str) -> str:
    """What the store keeps of an agent token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def clip_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character.

    >>> clip_utf8("é" * 3, 5)
    'éé'
    """
    data = text.encode("utf-8", "replace")
    return data[:limit].decode("utf-8", "ignore")


def param_doc(key: str, value: str) -> bytes:
    """The answer to a parameter read, serialised once however many waiters get it."""
    return json.dumps({"key": key, "value": value}).encode("utf-8")


def state_doc(state: str, abort: str | None) -> bytes:
    return json.dumps({"state": state, "abort": abort}).encode("utf-8")


def _clamp(wait_s: float) -> float:
    return min(max(wait_s, 0.0), MAX_WAIT_S)


class Coordinator:
    """The coordination API over a :class:`RunStore` and a :class:`Hub`."""

    def __init__(self, store: RunStore, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self._caches: dict[str, RunCache] = {}
        self._owners: dict[str, tuple[tuple[str, str], float]] = {}
        # Runs whose remembered tokens are being checked again (on the server's loop).
        self._checking: dict[str, asyncio.Future[None]] = {}
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------

    def cache(self, run_id: str) -> RunCache:
        """The run's cache, loaded from the store on first use (NotFound for no such run)."""
        cache = self._caches.get(run_id)
        if cache is not None:
            return cache
        with self._lock:
            cache = self._caches.get(run_id)
            if cache is None:
                cache = self._load(run_id)
                self._caches[run_id] = cache
        return cache

    async def cache_async(self, run_id: str) -> RunCache:
        cache = self._caches.get(run_id)
        if cache is None:
            cache = await asyncio.get_running_loop().run_in_executor(None, self.cache, run_id)
        return cache

    def _load(self, run_id: str) -> RunCache:
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"unknown run `{run_id}`")
        expected = {i["name"] for i in self.store.instances(run_id) if not i["removed"]}
        voters = self.store.votes_by_state(run_id)
        spec = json.loads(run.spec)
        cache = RunCache(
            spec,
            self.store.params(run_id),
            {state: voters.get(state, set()) for state in STATES},
            expected,
            run.state,
            run.abort_message,
            run.state_since,
            copies=keys.mapped_copies(spec),
        )
        if run.state in NEXT_STATE and run.state not in ARMED_BY_ENGINE:
            cache.armed.add(run.state)
        return cache

    def forget(self, run_id: str) -> None:
        self._caches.pop(run_id, None)

    def spec(self, run_id: str) -> dict[str, Any]:
        return self.cache(run_id).spec

    def owner(self, token_hash_: str) -> tuple[str, str] | None:
        """(run, instance) of a token, remembered for a few seconds."""
        found = self._owners.get(token_hash_)
        if found is not None and time.monotonic() - found[1] < OWNER_TTL_S:
            return found[0]
        owner = self.store.instance_by_token(token_hash_)
        if owner is None:
            self._owners.pop(token_hash_, None)
        else:
            self._owners[token_hash_] = (owner, time.monotonic())
        return owner

    async def owner_async(self, token_hash_: str) -> tuple[str, str] | None:
        found = self._owners.get(token_hash_)
        if found is not None and time.monotonic() - found[1] < OWNER_TTL_S:
            return found[0]
        loop = asyncio.get_running_loop()
        if found is None:
            return await loop.run_in_executor(None, self.owner, token_hash_)
        # Remembered too long: every remembered token of its run is checked again at once
        # (one query, and one trip to a thread, for thousands of agents, not one each).
        run_id = found[0][0]
        checking = self._checking.get(run_id)
        if checking is None:
            checking = loop.run_in_executor(None, self._check_owners, run_id)
            self._checking[run_id] = checking
            checking.add_done_callback(lambda _: self._checking.pop(run_id, None))
        await asyncio.shield(checking)
        found = self._owners.get(token_hash_)
        return None if found is None else found[0]

    def _check_owners(self, run_id: str) -> None:
        """Forget the remembered tokens of ``run_id`` that no longer work, and remember the
        others afresh."""
        live = {i["token_hash"] for i in self.store.instances(run_id) if not i["removed"]}
        now = time.monotonic()
        with self._lock:  # retire() may be replacing the map meanwhile: never put one back
            for hash_, (owner, _) in list(self._owners.items()):
                if owner[0] == run_id:
                    if hash_ in live:
                        self._owners[hash_] = (owner, now)
                    else:
                        del self._owners[hash_]

    # -- the agent API (on the server's event loop) -----------------------------------

    def fence(self, cache: RunCache) -> None:
        """Raise :class:`Aborted` when the run's abort flag is up."""
        if cache.abort is not None:
            raise Aborted(cache.abort)

    def _read(self, cache: RunCache, target: str) -> str | None:
        if target == "ss:state":
            return cache.state
        if target == "ss:abort":
            return cache.abort
        return cache.values.get(target)

    async def get(
        self, run_id: str, caller: str, key: str, wait_s: float, ignore_abort: bool = False
    ) -> bytes | None:
        """The answer to a read of ``key`` (``{"key", "value"}``), waiting up to ``wait_s``
        for it to be set; None when it is still unset. ``ignore_abort`` reads past the
        abort fence (SlipStream's ``--ignore-abort``, for clean-up scripts)."""
        cache = await self.cache_async(run_id)
        target = keys.readable(cache.spec, caller, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _clamp(wait_s)
        while True:
            if not ignore_abort:
                self.fence(cache)
            value = self._read(cache, target)
            if value is not None:
                return param_doc(target, value)
            left = deadline - loop.time()
            if left <= 0:
                return None
            woken = await self.hub.wait(run_id, target, left, who=caller)
            if isinstance(woken, bytes) and (cache.abort is None or ignore_abort):
                return woken  # made once by the writer, shared by every waiter
            if woken is TIMED_OUT:
                if not ignore_abort:
                    self.fence(cache)
                return None

    async def get_all(
        self,
        run_id: str,
        caller: str,
        node: str,
        name: str,
        wait_s: float,
        ignore_abort: bool = False,
    ) -> tuple[list[tuple[str, str | None]], bool]:
        """``(key, value)`` of ``name`` for each instance of ``node`` (a value is None while
        unset), and whether all were set within ``wait_s``."""
        cache = await self.cache_async(run_id)
        body = keys.node_of(cache.spec, node, f"{node}:{name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _clamp(wait_s)
        asked = [f"{node}.{i}:{name}" for i in keys.live_indices(body)]
        found: list[tuple[str, str | None]] = []
        for key in asked:
            left = max(0.0, deadline - loop.time())
            answer = await self.get(run_id, caller, key, left, ignore_abort)
            if answer is None:
                # Time is up: what the others hold now, without waiting any longer.
                rest = [(k, self._read(cache, keys.readable(cache.spec, caller, k))) for k in asked]
                return rest, False
            found.append((key, json.loads(answer)["value"]))
        return found, True

    async def put(
        self, run_id: str, caller: str, key: str, value: str, ignore_abort: bool = False
    ) -> str:
        """Store a value (after the fence, unless ``ignore_abort``, and the checks); returns
        the stored key."""
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise BadRequest(f"value of `{key}` is not valid Unicode text") from exc
        if size > MAX_VALUE_BYTES:
            raise BadRequest(f"value of `{key}` is over {MAX_VALUE_BYTES} bytes")
        cache = await self.cache_async(run_id)
        target = keys.settable(cache.spec, caller, key)
        if not ignore_abort:
            self.fence(cache)
        await self._fenced(self._publish(run_id, cache, {target: value}, fenced=not ignore_abort))
        return target

    async def vote(self, run_id: str, caller: str, state: str) -> None:
        """``caller`` finished its work for ``state``: the current state, or an earlier one
        (a replay after a restart); a vote for a state the run has not reached is refused."""
        if state not in STATES:
            raise BadRequest(f"unknown state `{state}`")
        cache = await self.cache_async(run_id)
        self.fence(cache)
        if cache.state in STATES[:5] and STATES.index(state) > STATES.index(cache.state):
            raise BadRequest(f"cannot vote {state}: the run is in {cache.state}")
        future = self.store.put_vote(
            run_id, caller, state, fenced=True, after=lambda _: self._voted(run_id, caller, state)
        )
        await self._fenced(future)

    async def raise_abort(self, run_id: str, message: str, cancel: bool = False) -> bool:
        """Raise the abort flag (first message wins) and wake every waiter; refused
        (:class:`Aborted`) once the run is over."""
        await self.cache_async(run_id)
        return await self._fenced(self._abort(run_id, message, cancel, fenced=True))

    async def post_event(self, run_id: str, caller: str, message: str, level: str) -> None:
        """Add a line to the run's log for ``caller`` (its name first), at most
        :data:`MAX_EVENTS_PER_INSTANCE` of them: past that they are refused
        (:class:`TooMany`), and one event says so."""
        cache = await self.cache_async(run_id)
        if caller not in cache.posted:
            loop = asyncio.get_running_loop()
            count = await loop.run_in_executor(None, self.store.posted_events, run_id, caller)
            cache.posted.setdefault(caller, count)
        posted = cache.posted[caller]
        if posted >= MAX_EVENTS_PER_INSTANCE:
            why = f"{caller} has posted {MAX_EVENTS_PER_INSTANCE} events, the most one instance may"
            if posted == MAX_EVENTS_PER_INSTANCE:  # once: the count passes the limit
                cache.posted[caller] += 1
                note = f"{caller}: {why}; its later events are refused"
                data = {"instance": caller, "level": "warning"}
                await self._fenced(self.store.put_event(run_id, "agent", note, data, fenced=True))
            raise TooMany(f"{why}: this one is refused")
        text = clip_utf8(message, MAX_VALUE_BYTES)
        if not text.startswith(f"{caller}:"):
            text = f"{caller}: {text}"
        cache.posted[caller] = posted + 1
        data = {"instance": caller, "level": clip_utf8(level, 16)}
        await self._fenced(self.store.put_event(run_id, "agent", text, data, fenced=True))

    async def record_report(self, run_id: str, caller: str, path: str, size: int) -> None:
        """Record an uploaded report (refused once the run is over) and log it."""
        loop = asyncio.get_running_loop()
        store = self.store

        def write() -> None:
            store.add_report(run_id, caller, path, size, fenced=True)

        try:
            await loop.run_in_executor(None, write)
        except Fenced as err:
            os.unlink(path)
            raise Aborted(err.abort or f"the run is over ({err.state})") from None
        message = f"{caller}: report uploaded ({size} bytes)"
        await asyncio.wrap_future(store.put_event(run_id, "report", message, {"instance": caller}))

    async def wait_state(self, run_id: str, after: str | None, wait_s: float) -> bytes:
        """``{"state", "abort"}`` once the state differs from ``after`` or the wait ends."""
        cache = await self.cache_async(run_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _clamp(wait_s)
        while True:
            left = deadline - loop.time()
            if after is None or cache.state != after or cache.abort is not None or left <= 0:
                return state_doc(cache.state, cache.abort)
            woken = await self.hub.wait(run_id, STATE_WATCH, left)
            if isinstance(woken, bytes):
                return woken
            if woken is TIMED_OUT:
                return state_doc(cache.state, cache.abort)

    async def _fenced(self, future: Future[T]) -> T:
        try:
            return await asyncio.wrap_future(future)
        except Fenced as err:
            raise Aborted(err.abort or f"the run is over ({err.state})") from None

    # -- writes and their effects (after commit, on the store's writer thread) --------

    def _publish(
        self, run_id: str, cache: RunCache, values: dict[str, str], fenced: bool = False
    ) -> Future[None]:
        values = keys.with_copies(cache.copies, values)

        def published(_: object) -> None:
            cache.values.update(values)
            for key, value in values.items():
                self.hub.notify(run_id, key, payload=param_doc(key, value))

        return self.store.put_params(run_id, values, fenced=fenced, after=published)

    def _voted(self, run_id: str, caller: str, state: str) -> None:
        cache = self.cache(run_id)
        cache.voters_of(state).add(caller)
        self.hub.notify(run_id, VOTES)
        self._advance(run_id, cache)

    def _advance(self, run_id: str, cache: RunCache) -> None:
        """Move the run on if the barrier of its state is complete (once)."""
        with cache.lock:
            state = cache.state
            if cache.advancing == state or not cache.barrier_complete(state):
                return
            cache.advancing = state
        self._move(run_id, NEXT_STATE[state], expect=state)

    def _move(self, run_id: str, state: str, expect: str | None) -> Future[bool]:
        cache = self.cache(run_id)

        def moved(done: bool) -> None:
            if done:
                self._entered(run_id, cache, state)
            else:
                with cache.lock:
                    cache.advancing = None

        def failed(future: Future[bool]) -> None:
            if future.exception() is not None:  # say a full disk: the next refresh retries
                with cache.lock:
                    cache.advancing = None

        event = ("state", f"run entered {state}", {"state": state})
        future = self.store.move_state(run_id, state, expect=expect, after=moved, event=event)
        future.add_done_callback(failed)
        return future

    def _entered(self, run_id: str, cache: RunCache, state: str) -> None:
        with cache.lock:
            cache.state = state
            cache.state_since = time.time()
            cache.values["ss:state"] = state
            cache.advancing = None
            if state in NEXT_STATE and state not in ARMED_BY_ENGINE:
                cache.armed.add(state)
        self.hub.notify(run_id, "ss:state", payload=param_doc("ss:state", state))
        self.hub.notify(run_id, STATE_WATCH, payload=state_doc(state, cache.abort))
        self._advance(run_id, cache)

    def _abort(self, run_id: str, message: str, cancel: bool, fenced: bool = False) -> Future[bool]:
        cache = self.cache(run_id)
        message = clip_utf8(message, MAX_VALUE_BYTES)

        def aborted(raised: bool) -> None:
            if raised:
                cache.abort = message
            elif cache.abort is None:  # raised earlier, by another process: the first wins
                cache.abort = (self.store.run_flags(run_id) or ("", message))[1] or message
            cache.values["ss:abort"] = cache.abort
            self.hub.notify_run(run_id)

        return self.store.put_abort(
            run_id,
            message,
            cancelled=cancel,
            after=aborted,
            event=("abort", message, {}),
            fenced=fenced,
        )

    # -- the engine's side (from its own threads) -------------------------------------

    def publish(self, run_id: str, values: dict[str, str]) -> None:
        """Store values set by the engine (no fence), then wake whoever waits for them."""
        self._publish(run_id, self.cache(run_id), values).result()

    def set_state(self, run_id: str, state: str, expect: str | None = None) -> bool:
        return self._move(run_id, state, expect).result()

    def abort(self, run_id: str, message: str, cancel: bool = False) -> bool:
        """Raise the abort flag (first message wins) and wake every waiter."""
        return self._abort(run_id, message, cancel).result()

    def arm(self, run_id: str, state: str) -> None:
        """The engine's part of ``state`` is done: its barrier may now release."""
        cache = self.cache(run_id)
        with cache.lock:
            cache.armed.add(state)
        self._advance(run_id, cache)

    def flags(self, run_id: str) -> tuple[str, str | None]:
        """(state, abort message) as this process knows them."""
        cache = self.cache(run_id)
        return cache.state, cache.abort

    def refresh(self, run_id: str) -> tuple[str, str | None]:
        """Re-read the state and abort flag (another process may have changed them) and wake
        the run's waiters when they did."""
        cache = self.cache(run_id)
        found = self.store.run_flags(run_id)
        if found is None:
            raise NotFound(f"unknown run `{run_id}`")
        state, abort = found
        if abort is not None and cache.abort is None:
            cache.abort = abort
            cache.values["ss:abort"] = abort
            self.hub.notify_run(run_id)
        # Only forward: a read that raced the writer thread's commit of a later state is
        # stale, and taking it would move the run back (a vote for the later state, already
        # announced to the agents, would then be refused).
        if STATES.index(state) > STATES.index(cache.state) and cache.advancing is None:
            self._entered(run_id, cache, state)
        else:
            self._advance(run_id, cache)  # a barrier whose move failed to be written
        return cache.state, cache.abort

    def voters(self, run_id: str, state: str) -> set[str]:
        return set(self.cache(run_id).voters_of(state))

    def expected(self, run_id: str) -> set[str]:
        return set(self.cache(run_id).expected)

    def wait_change(self, run_id: str, state: str, wait_s: float) -> None:
        """Block this thread until the run leaves ``state``, is aborted, or ``wait_s`` ends."""
        with self.hub.waiting(run_id, STATE_WATCH) as woken:
            cache = self.cache(run_id)
            if cache.state == state and cache.abort is None:
                woken.wait(wait_s)

    def retire(self, run_id: str) -> None:
        """After destroy: the run's tokens stop working at once."""
        self.store.retire_instances(run_id)
        with self._lock:
            self._owners = {h: o for h, o in self._owners.items() if o[0][0] != run_id}

    # -- scale actions (engine.runs.scaling) ------------------------------------------

    def rescale(self, run_id: str, spec: dict[str, Any], expected: set[str]) -> None:
        """A scale round starts: the run's new ``spec`` (already stored), the instances
        whose votes its barriers now wait for, and every barrier open again (their votes
        were cleared in the store). Waiters keep their cache: it is changed in place."""
        cache = self.cache(run_id)
        with cache.lock:
            cache.spec = spec
            cache.copies = keys.mapped_copies(spec)
            cache.expected = set(expected)
            for state in NEXT_STATE:
                cache.voters[state] = set()
                cache.armed.discard(state)

    def leave(self, run_id: str, names: set[str], spec: dict[str, Any] | None = None) -> None:
        """Instances leave the barriers (removed, or dropped as failed); the barrier of the
        current state may then release."""
        cache = self.cache(run_id)
        with cache.lock:
            cache.expected -= names
            if spec is not None:
                cache.spec = spec
                cache.copies = keys.mapped_copies(spec)
        gone = {(run_id, name) for name in names}  # their tokens stop working at once
        with self._lock:
            self._owners = {h: o for h, o in self._owners.items() if o[0] not in gone}
        self._advance(run_id, cache)

    # -- the scaled mode: writes made by other processes (engine.coordination.replicas) --

    def remote(self, doc: dict[str, Any]) -> None:
        """Apply a write another process (or this one) committed, announced by NOTIFY:
        update the run's cache if this process has it, and wake its waiters. Applying a
        write twice changes nothing, so this process's own announcements are harmless."""
        run_id = str(doc["r"])
        cache = self._caches.get(run_id)
        if cache is None:
            return  # loaded from the store when first used
        kind = doc["k"]
        if kind == "p":
            values = doc.get("v")
            if values is None:
                values = {k: v for k in doc["keys"] if (v := self.store.get_param(run_id, k))}
            cache.values.update(values)
            for key, value in values.items():
                self.hub.notify(run_id, key, payload=param_doc(key, value))
        elif kind == "v":
            cache.voters_of(doc["s"]).add(doc["i"])
            self.hub.notify(run_id, VOTES)
            self._advance(run_id, cache)
        elif kind == "s":
            state = doc["s"]
            if STATES.index(state) > STATES.index(cache.state):
                self._entered(run_id, cache, state)
        elif kind == "a":
            if cache.abort is None:
                cache.abort = clip_utf8(doc["m"], MAX_VALUE_BYTES)
                cache.values["ss:abort"] = cache.abort
            self.hub.notify_run(run_id)
        else:
            self.refresh(run_id)

    def resync(self) -> None:
        """Re-read every cached run (after notifications may have been missed)."""
        for run_id, cache in list(self._caches.items()):
            try:
                cache.values.update(self.store.params(run_id))
                for state, voters in self.store.votes_by_state(run_id).items():
                    cache.voters_of(state).update(voters)
                self.refresh(run_id)
                self.hub.notify_run(run_id)
            except Exception:  # a run deleted meanwhile: forget it
                self.forget(run_id)
