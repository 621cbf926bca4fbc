"""Wall time of scale actions on the `local` cloud: a scalable `cluster` run of 20
instances (head + 19 workers) grows by 10 workers, then shrinks by 10. Each round is the
real thing: Terraform's targeted change, the new agents' whole chain, and every survivor's
`on_vm_add` / `on_vm_remove` gathering the answer again. Prints the figures.

Run: ``python bench/scale.py [workers] [step]`` (default 19 and 10).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 19
    step = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-", dir="/var/tmp"))
    os.environ["SLIPSTREAM_HOME"] = str(tmp / "home")
    from engine.cli.runs import driving_service
    from engine.recipes.overrides import Overrides

    service = driving_service()
    actor = service.local_actor("bench")
    parsed = Overrides.parse(["problem_size=100000"], [], [f"worker={workers}"])
    run_id = ""
    try:
        start = time.perf_counter()
        run_id = service.deploy(actor, "cluster", parsed)
        assert service.drive(run_id) == "Ready"
        figures = {f"deploy ({workers + 1} instances)": time.perf_counter() - start}
        for change in (f"worker=+{step}", f"worker=-{step}"):
            start = time.perf_counter()
            state = service.scale(actor, run_id, [change])
            figures[change] = time.perf_counter() - start
            assert state == "Ready", service.get_run(actor, run_id)["abort"]
        params = service.params(actor, run_id)
        assert params["worker:multiplicity"] == str(workers)
        print(f"scale bench on {platform.node()} ({os.cpu_count()} cpus), run {run_id}")
        for what, seconds in figures.items():
            print(f"  {what:<24} {seconds:7.2f} s")
    finally:
        if run_id:
            service.terminate(actor, run_id)
        service.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
