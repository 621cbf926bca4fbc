"""kill -9 of the deploying process mid-apply, then `destroy`: nothing may be left behind
(issue 16, item 1). A few rounds here; ``bench/kill9.py`` runs the 20 of the issue."""

from __future__ import annotations

import random
from pathlib import Path

from tests.runs.kill9 import one_round, write_recipes

ROUNDS = 3


def test_item_1_kill_9_mid_apply_then_destroy_leaves_nothing(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    recipe = write_recipes(tmp_path / "recipes")
    rounds = [one_round(tmp_path / f"round-{i}", recipe, rng) for i in range(ROUNDS)]
    assert all(r.mid_apply for r in rounds), (seed, rounds)
    assert [r.left for r in rounds] == [[]] * ROUNDS, (seed, rounds)
