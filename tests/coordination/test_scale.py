"""500 simulated agents through a whole run leave no thread, connection or file behind.

The real store (SQLite), hub, coordinator, agent API and HttpServer; the run driven by
``RunManager.drive`` (only Terraform left out); the agents are the coordination bench's
(``bench/simagents.py``: one keep-alive connection each, the fan-out, ping-pong and three
barriers). While the server still runs, it must hold no connection once the agents are
gone; once it and the store are stopped, the process must have no thread and no file
descriptor it did not have before (tolerance 0, after a short settle).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine.compile.runspec import instance_names
from engine.coordination.hub import Hub
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from engine.runs import manager as manager_module
from engine.runs.launcher import token_file
from engine.runs.manager import RunManager
from engine.store.runstore import RunStore
from engine.terraform.binary import TerraformExe
from webhooks.app import create_app
from webhooks.server import HttpServer

BENCH = Path(__file__).resolve().parents[2] / "bench"
AGENTS = 500
SETTLE_S = 10.0


def load(name: str) -> ModuleType:
    """A module of bench/ (not a package: the bench runs as scripts)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fds() -> dict[int, str]:
    """This process's open file descriptors and what each is."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def sockets() -> int:
    return sum(target.startswith("socket:") for target in fds().values())


def settled(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_500_agents_leave_no_thread_connection_or_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simagents, bench = load("simagents"), load("coordination")
    # Simulated agents take no memory: the check made for real local processes is off.
    monkeypatch.setattr(manager_module, "check_local_capacity", lambda instances, available: None)
    gc.collect()  # what earlier tests left for the collector closes now, not during this one
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = fds()

    root, home = tmp_path / "recipes", tmp_path / "home"
    root.mkdir()
    clouds = CloudsConfig.default()
    dep = RecipeLoader(root, clouds).deployment(
        bench.write_recipes(root, AGENTS, 120), require_values=True
    )
    store = RunStore.open(f"sqlite:///{home}/runs.db")
    hub = Hub()
    manager = RunManager(home, store, hub, TerraformExe(["false"], "test"))
    monkeypatch.setattr(manager, "_apply_all", lambda run_id: None)  # no Terraform
    run_id = manager.create(dep, clouds, "alice")
    names = instance_names(manager.coordinator.spec(run_id))
    server = HttpServer(
        create_app(home, manager.coordinator), tcp=("127.0.0.1", 0), on_loop=hub.attach
    ).start()
    idle_sockets = sockets()
    partners = {}
    for a, b in zip(names[0::2], names[1::2], strict=False):
        partners[a], partners[b] = (b, True), (a, False)
    cfg = {
        "target": "tcp:" + server.tcp_url.removeprefix("http://"),
        "run_id": run_id,
        "n": AGENTS,
        "names": names,
        "tokens": {n: token_file(home, run_id, n).read_text().strip() for n in names},
        "partners": partners,
        "peers": {n: names[(i + 1) % len(names)] for i, n in enumerate(names)},
        "burst": 0.5,
        "deadline": time.monotonic() + 120,
    }
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    def agents() -> None:
        outcome.update(asyncio.run(simagents.run(cfg, connected.set)))

    crowd = threading.Thread(target=agents, name="simulated-agents")
    crowd.start()
    try:
        assert connected.wait(120), "the agents did not connect"
        assert sockets() >= idle_sockets + 2 * AGENTS  # both ends of each connection
        state = manager.drive(run_id)
        crowd.join(180)
        assert not crowd.is_alive()
        assert state == "Ready"
        records = outcome["instances"]
        assert len(records) == AGENTS
        assert [r["error"] for r in records if r["error"]] == []
        assert all(set(r["seen"]) >= {"Provisioning", "Ready"} for r in records)
        assert all(r["connects"] == 1 for r in records)  # one kept-alive connection each
        assert sum(r["burst_ops"] for r in records) > 0
        # The agents are gone: the server has let go of every connection they held.
        assert settled(lambda: sockets() == idle_sockets), (sockets(), idle_sockets)
    finally:
        server.stop()
        store.close()
    assert settled(lambda: {t.ident for t in threading.enumerate()} <= threads_before), [
        t.name for t in threading.enumerate() if t.ident not in threads_before
    ]
    # Not one descriptor more than before (one the process held may have been closed).
    assert settled(lambda: fds().items() <= fds_before.items()), {
        fd: what for fd, what in fds().items() if fds_before.get(fd) != what
    }
