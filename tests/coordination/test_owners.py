"""Token owners remembered by the serving process: past their time they are checked again
all at once per run (one query for every agent of it), and a token retired by another
process stops working then."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.coordination import coordinator as coordinator_module
from engine.coordination.coordinator import token_hash
from engine.coordination.hub import Hub
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from engine.runs.launcher import token_file
from engine.runs.manager import RunManager
from engine.store.runstore import RunStore
from engine.terraform.binary import TerraformExe


def test_stale_owners_are_checked_once_per_run_and_retired_ones_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore.open(f"sqlite:///{tmp_path}/runs.db")
    manager = RunManager(tmp_path, store, Hub(), TerraformExe(["false"], "test"))
    clouds = CloudsConfig.default()
    dep = RecipeLoader(None, clouds).deployment("webapp", require_values=True)
    kept, retired = (manager.create(dep, clouds, "alice") for _ in range(2))
    hashes = {
        run: {
            i["name"]: token_hash(token_file(tmp_path, run, i["name"]).read_text().strip())
            for i in store.instances(run)
        }
        for run in (kept, retired)
    }
    coordinator = manager.coordinator
    asked: list[str] = []
    instances = store.instances

    def counted(run_id: str) -> list[dict[str, Any]]:
        asked.append(run_id)
        return instances(run_id)

    monkeypatch.setattr(store, "instances", counted)

    async def owners(run: str) -> list[tuple[str, str] | None]:
        return list(
            await asyncio.gather(*(coordinator.owner_async(h) for h in hashes[run].values()))
        )

    async def scenario() -> None:
        assert await owners(kept) == [(kept, name) for name in hashes[kept]]
        assert await owners(retired) == [(retired, name) for name in hashes[retired]]
        assert asked == []  # first sight: one lookup per token, not the run's list
        store.retire_instances(retired)  # another process destroys the run
        assert await owners(retired) != [None] * len(hashes[retired])  # remembered still
        monkeypatch.setattr(coordinator_module, "OWNER_TTL_S", 0.0)
        assert await owners(kept) == [(kept, name) for name in hashes[kept]]
        assert await owners(retired) == [None] * len(hashes[retired])
        # Every stale token of a run waited for one check of it.
        assert sorted(asked) == sorted([kept, retired])

    try:
        asyncio.run(scenario())
    finally:
        store.close()
