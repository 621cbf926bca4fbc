"""kill -9 of `slipstream deploy` at random points of `terraform apply` of a 40-instance run
on `local`, each followed by `slipstream destroy`; counts the rounds that left nothing
behind (no process, no sandbox, no state entry, no Terraform still running).

Run: ``python bench/kill9.py [rounds] [seed]`` (default 20 rounds, a random seed).
The test ``tests/runs/test_e2e_kill9.py`` runs a few rounds of the same scenario.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.runs.kill9 import INSTANCES, one_round, write_recipes  # noqa: E402


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(
        f"kill -9 mid-apply of a {INSTANCES}-instance run, then destroy: {rounds} rounds, "
        f"seed {seed}"
    )
    clean = mid = 0
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill9-") as tmp:
        recipe = write_recipes(Path(tmp) / "recipes")
        for n in range(rounds):
            result = one_round(Path(tmp) / f"round-{n}", recipe, rng)
            clean += not result.left
            mid += result.mid_apply
            where = "mid-apply" if result.mid_apply else "after apply"
            verdict = "clean" if not result.left else "LEFT: " + "; ".join(result.left)
            print(
                f"{n + 1:>3}  killed {result.killed_after_s:>6.2f}s into the deploy ({where}), "
                f"destroy {result.destroy_s:>5.1f}s, exit {result.destroy_exit}: {verdict}",
                flush=True,
            )
    print(
        f"{clean}/{rounds} rounds clean ({mid} killed mid-apply) in {time.monotonic() - began:.0f}s"
    )
    return 0 if clean == rounds else 1


if __name__ == "__main__":
    sys.exit(main())
