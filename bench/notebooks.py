"""The notebook front door's costs: what a kernel pays to show ``Panel()``, what the
timeline costs on a big run, and the time from the Deploy click to Ready (a real
``cluster`` on ``local``, one worker, through the panel's widgets, then destroyed).

Run: ``python bench/notebooks.py`` (prints figures; asserts nothing about time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHOW_PANEL = """
import time
t0 = time.perf_counter()
from notebooks import Panel
panel = Panel()
print(f"{time.perf_counter() - t0:.3f}")
panel.close()
"""


def show_panel(home: Path) -> float:
    env = dict(os.environ, SLIPSTREAM_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-c", SHOW_PANEL],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(done.stdout.strip().splitlines()[-1])


def timeline_cost(instances: int = 200) -> tuple[float, int]:
    from notebooks.timeline import render_svg, timeline

    events = [{"at": 0.0, "kind": "state", "message": "", "data": {"state": "Provisioning"}}]
    for state, at in (("Executing", 30.0), ("SendingReports", 90.0), ("Ready", 95.0)):
        for i in range(instances):
            name = f"n{i % 4}.{i // 4 + 1}"
            events.append(
                {
                    "at": at - 1 + i / instances,
                    "kind": "agent",
                    "data": {"instance": name},
                    "message": f"{name}: script `deployment` finished (exit 0, 1.0s)",
                }
            )
        events.append({"at": at, "kind": "state", "message": "", "data": {"state": state}})
    t0 = time.perf_counter()
    svg = render_svg(timeline(events, now=100.0))
    return time.perf_counter() - t0, len(svg)


def deploy_to_ready(home: Path) -> tuple[float, float]:
    from notebooks.deploy_panel import DeployPanel
    from notebooks.embedded import EmbeddedBackend

    backend = EmbeddedBackend.open(home, REPO)
    panel = DeployPanel(backend, REPO)
    panel.recipe.value = "cluster"
    panel.counts["worker"].value = 1
    t0 = time.perf_counter()
    panel.deploy_button.click()
    clicked = time.perf_counter() - t0
    doc = panel.wait(timeout=600)
    ready = time.perf_counter() - t0
    assert doc["state"] == "Ready", doc
    backend.terminate(panel.run_id)
    while backend.busy(panel.run_id):
        time.sleep(0.2)
    backend.close()
    return clicked, ready


def main() -> None:
    with tempfile.TemporaryDirectory() as top:
        home = Path(top) / "home"
        shows = sorted(show_panel(home) for _ in range(3))
        print(f"Panel() in a fresh process (import included): median {shows[1]:.2f} s")
        cost, size = timeline_cost()
        print(f"timeline of 200 instances, 600 events: {cost * 1000:.1f} ms, {size} bytes of SVG")
        clicked, ready = deploy_to_ready(home)
        print(
            f"Deploy click returns in {clicked * 1000:.0f} ms; Ready after {ready:.1f} s "
            "(cluster, 2 instances, local)"
        )


if __name__ == "__main__":
    main()
