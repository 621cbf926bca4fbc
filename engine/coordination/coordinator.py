"""Coordinator: runtime parameters, barriers and the abort fence of running deployments.

Every agent call lands here (through the agent API): keys are checked against the run
spec, bare keys resolve to the caller's instance, mapped inputs resolve through their
mapping, waits are long-polls woken by the :class:`~engine.coordination.hub.Hub`, and after an abort
every get and set fails fast.

Example:
    >>> parse_key("web.2:url"), parse_key("web:ids"), parse_key("ss:state")
    (('web', 2, 'url'), ('web', 0, 'ids'), ('ss', 0, 'state'))
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from typing import Any

from engine.coordination.hub import Hub
from engine.coordination.runcache import RunCache
from engine.store.runstore import RunStore

MAX_VALUE_BYTES = 4096
MAX_WAIT_S = 30.0
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
INSTANCE_BUILTINS = ("hostname", "instanceid", "cloud", "nodename", "id", "statecustom")
SETTABLE_BUILTINS = ("statecustom",)
RUN_KEYS = ("state", "abort", "category", "url.service")
NODE_KEYS = ("multiplicity", "ids")
_KEY = re.compile(
    r"^([a-z][a-z0-9-]{0,62})(?:\.([1-9][0-9]{0,5}))?:([A-Za-z][A-Za-z0-9_.-]{0,127})$"
)


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


class AgentError(Exception):
    """A refused agent request; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AgentError):
    status = 400


class Forbidden(AgentError):
    status = 403


class NotFound(AgentError):
    status = 404


class Aborted(AgentError):
    """The run's abort flag is up: the fence refuses every get and set."""

    status = 409


def parse_key(key: str) -> tuple[str, int, str]:
    """(node or ``ss``, instance index or 0 for node-wide, name); ValueError when malformed."""
    match = _KEY.match(key)
    if not match:
        raise ValueError(f"malformed key `{key}`")
    return match.group(1), int(match.group(2) or 0), match.group(3)


def _full_key(caller: str, key: str) -> tuple[str, tuple[str, int, str]]:
    """A key with the caller's instance added when bare, and its parsed parts."""
    if ":" not in key:
        key = f"{caller}:{key}"
    try:
        return key, parse_key(key)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


class Coordinator:
    """The coordination API over a :class:`RunStore` and a :class:`Hub`."""

    def __init__(self, store: RunStore, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self._specs: dict[str, dict[str, Any]] = {}
        self._caches: dict[str, RunCache] = {}
        self._owners: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def owner(self, token_hash_: str) -> tuple[str, str] | None:
        """(run, instance) of a token; tokens never change hands, so hits are remembered."""
        found = self._owners.get(token_hash_)
        if found is None:
            found = self.store.instance_by_token(token_hash_)
            if found is not None:
                self._owners[token_hash_] = found
        return found

    def _cache(self, run_id: str) -> RunCache:
        cache = self._caches.get(run_id)
        if cache is None:
            with self._lock:
                cache = self._caches.get(run_id)
                if cache is None:
                    self.spec(run_id)  # NotFound for an unknown run
                    found = self.store.votes_by_state(run_id)
                    voters = {state: found.get(state, set()) for state in STATES}
                    cache = RunCache(self.store.params(run_id), voters)
                    self._caches[run_id] = cache
        return cache

    def flags(self, run_id: str) -> tuple[str, str | None]:
        """(state, abort message), at most ``runcache.FLAGS_TTL_S`` old."""
        cache = self._cache(run_id)
        if not cache.flags_fresh():
            self._refresh_flags(run_id, cache)
        return cache.state, cache.abort

    def _refresh_flags(self, run_id: str, cache: RunCache) -> None:
        flags = self.store.run_flags(run_id)
        if flags is None:
            raise NotFound(f"unknown run `{run_id}`")
        cache.set_flags(*flags)

    def spec(self, run_id: str) -> dict[str, Any]:
        if run_id not in self._specs:
            run = self.store.get_run(run_id)
            if run is None:
                raise NotFound(f"unknown run `{run_id}`")
            self._specs[run_id] = json.loads(run.spec)
        return self._specs[run_id]

    def forget(self, run_id: str) -> None:
        self._specs.pop(run_id, None)
        self._caches.pop(run_id, None)

    # -- keys -------------------------------------------------------------------------

    def resolve(self, run_id: str, caller: str, key: str) -> str:
        """The stored key a read of ``key`` by ``caller`` means (mapped inputs followed)."""
        key, (head, index, name) = _full_key(caller, key)
        if head == "ss":
            if index or name not in RUN_KEYS:
                raise NotFound(f"unknown run parameter `{key}`")
            return key
        node = self._node(run_id, head, key)
        if index == 0:
            if name not in NODE_KEYS:
                raise NotFound(
                    f"unknown node parameter `{key}` (node parameters: {', '.join(NODE_KEYS)})"
                )
            return key
        if index > int(node["multiplicity"]):
            raise NotFound(f"`{key}`: node `{head}` has {node['multiplicity']} instance(s)")
        binding = node["inputs"].get(name)
        if binding is not None and "from" in binding:
            return str(binding["from"])
        if (
            binding is None
            and name not in node["outputs"]
            and name not in INSTANCE_BUILTINS
            and not name.startswith("url.")
        ):
            raise NotFound(f"`{key}`: component `{node['component']}` declares no `{name}`")
        return key

    def _node(self, run_id: str, node: str, key: str) -> dict[str, Any]:
        nodes: dict[str, Any] = self.spec(run_id)["nodes"]
        if node not in nodes:
            raise NotFound(f"`{key}`: unknown node `{node}`")
        body: dict[str, Any] = nodes[node]
        return body

    def settable(self, run_id: str, caller: str, key: str) -> str:
        """The stored key ``caller`` may set for ``key``; Forbidden otherwise."""
        key, (head, index, name) = _full_key(caller, key)
        if head == "ss":
            if name == "url.service" and not index:
                return key
            raise Forbidden(f"`{key}` is not settable by an instance")
        if f"{head}.{index}" != caller:
            raise Forbidden(f"`{key}` belongs to another instance; `{caller}` sets only its own")
        node = self._node(run_id, head, key)
        if name in node["outputs"] or name in SETTABLE_BUILTINS or name.startswith("url."):
            return key
        if name in node["inputs"]:
            raise Forbidden(f"`{key}` is an input; only outputs can be set")
        raise Forbidden(f"`{key}`: component `{node['component']}` declares no output `{name}`")

    # -- operations -------------------------------------------------------------------

    def fence(self, run_id: str) -> None:
        """Raise :class:`Aborted` when the run's abort flag is up."""
        _, abort = self.flags(run_id)
        if abort is not None:
            raise Aborted(abort)

    def get(self, run_id: str, caller: str, key: str, wait_s: float) -> tuple[str, str | None]:
        """(stored key read, its value), waiting up to ``wait_s``; the value is None when
        still unset."""
        target = self.resolve(run_id, caller, key)
        values = self._cache(run_id).values
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        with self.hub.waiting(run_id, target, who=caller) as woken:
            while True:
                self.fence(run_id)
                if target in ("ss:state", "ss:abort"):
                    state, abort = self.flags(run_id)  # may change in another process
                    value = state if target == "ss:state" else abort
                else:
                    value = values.get(target)
                if value is not None:
                    return target, value
                left = deadline - time.monotonic()
                if left <= 0:
                    return target, None
                woken.wait(left)
                woken.clear()

    def get_all(
        self, run_id: str, caller: str, node: str, name: str, wait_s: float
    ) -> list[str] | None:
        """One value per instance of ``node`` once every instance has set ``name``."""
        body = self._node(run_id, node, f"{node}:{name}")
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        values: list[str] = []
        for index in range(1, int(body["multiplicity"]) + 1):
            left = max(0.0, deadline - time.monotonic())
            _, value = self.get(run_id, caller, f"{node}.{index}:{name}", left)
            if value is None:
                return None
            values.append(value)
        return values

    def put(self, run_id: str, caller: str, key: str, value: str) -> str:
        """Store a value (after the fence and the checks); returns the stored key."""
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise BadRequest(f"value of `{key}` is not valid Unicode text") from exc
        if size > MAX_VALUE_BYTES:
            raise BadRequest(f"value of `{key}` is over {MAX_VALUE_BYTES} bytes")
        target = self.settable(run_id, caller, key)
        self.fence(run_id)
        self.publish(run_id, {target: value})
        return target

    def publish(self, run_id: str, values: dict[str, str]) -> None:
        """Store values set by the engine or an agent, then wake whoever waits for them."""
        cache = self._cache(run_id)
        # The cache is updated in commit order, so it always agrees with the store.
        self.store.set_params(run_id, values, after=lambda: cache.values.update(values))
        self.hub.notify(run_id, *values)

    def refresh_voters(self, run_id: str, state: str) -> set[str]:
        """Re-read a state's voters from the store (votes are normally cached as they come)."""
        voters = self.store.voters(run_id, state)
        self._cache(run_id).voters[state].update(voters)
        return set(self._cache(run_id).voters[state])

    def retire(self, run_id: str) -> None:
        """After destroy: the run's tokens stop working at once."""
        self.store.retire_instances(run_id)
        self._owners = {h: o for h, o in self._owners.items() if o[0] != run_id}

    def abort(self, run_id: str, message: str, cancel: bool = False) -> bool:
        """Raise the abort flag (first message wins) and wake every waiter."""
        message = clip_utf8(message, MAX_VALUE_BYTES)
        raised = self.store.set_abort(run_id, message, cancelled=cancel)
        if raised:
            self.store.add_event(run_id, "abort", message)
        cache = self._cache(run_id)
        self._refresh_flags(run_id, cache)
        if cache.abort is not None:
            cache.values["ss:abort"] = cache.abort
        self.hub.notify_run(run_id)
        return raised

    def vote(self, run_id: str, caller: str, state: str) -> None:
        if state not in STATES:
            raise BadRequest(f"unknown state `{state}`")
        self.store.vote(run_id, caller, state)
        self._cache(run_id).voters[state].add(caller)
        self.hub.notify(run_id, "ss:votes")

    def set_state(self, run_id: str, state: str, expect: str | None = None) -> bool:
        moved = self.store.set_state(run_id, state, expect=expect)
        cache = self._cache(run_id)
        self._refresh_flags(run_id, cache)
        if moved:
            cache.values["ss:state"] = state
            self.store.add_event(run_id, "state", f"run entered {state}", {"state": state})
            self.hub.notify(run_id, "ss:state")
            self.hub.notify_run(run_id)
        return moved

    def wait_state(self, run_id: str, after: str | None, wait_s: float) -> tuple[str, str | None]:
        """(state, abort message) once the state differs from ``after`` or the wait ends."""
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        with self.hub.waiting(run_id, "ss:state") as woken:
            while True:
                state, abort = self.flags(run_id)
                left = deadline - time.monotonic()
                if after is None or state != after or abort is not None or left <= 0:
                    return state, abort
                woken.wait(left)
                woken.clear()

    def wait_votes(self, run_id: str, state: str, expected: set[str], wait_s: float) -> set[str]:
        """Instances of ``expected`` that have not voted ``state`` after waiting up to wait_s."""
        deadline = time.monotonic() + wait_s
        with self.hub.waiting(run_id, "ss:votes") as woken:
            voters = self._cache(run_id).voters[state]
            while True:
                missing = expected - voters
                left = deadline - time.monotonic()
                if not missing or left <= 0 or self.flags(run_id)[1] is not None:
                    return missing
                woken.wait(left)
                woken.clear()
