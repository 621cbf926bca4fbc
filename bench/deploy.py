"""Wall time of `slipstream deploy webapp` on the local cloud, beside the floor: plain
`terraform init` + `apply` of the same compiled root (launcher replaced by /bin/true, so
only Terraform's own work is timed), and where the deploy's time goes, from the run's
events (their timestamps) and the command's start and exit:

- CLI start, recipes and compile: the process starts → the run is created (stored after
  compiling; compiling alone is timed apart, in this process);
- Terraform: Provisioning entered → `apply started` → the plan printed → `Apply
  complete!` (the instances' launchers ran inside it) → `apply done`;
- agents start and the Provisioning barrier: `apply done` → Executing entered;
- scripts (`deployment`): Executing → the last one finished, then the barrier → SendingReports;
- reporting and reports: SendingReports → the last report uploaded, then → Ready;
- CLI exit: Ready → the process exits.

Then one `ss-get` of a set value, process start to exit, timed inside a deployment's
script (20 in a row on an instance of a one-node deployment, while its run is served).

Run: ``python bench/deploy.py [rounds]`` (default 3 rounds; each deploys and destroys).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.compile.compiler import compile_text  # noqa: E402
from engine.recipes.clouds import CloudsConfig  # noqa: E402
from engine.recipes.loader import RecipeLoader  # noqa: E402
from engine.terraform.binary import find_terraform, terraform_env  # noqa: E402


def floor(tmp: Path) -> float:
    """Seconds for plain terraform init + apply of the compiled local root."""
    root = tmp / "floor"
    root.mkdir()
    config = CloudsConfig.default()
    (root / "main.tf.json").write_text(
        compile_text(RecipeLoader(None, config).deployment("webapp"), config)["local"]
    )
    exe = find_terraform(tmp / "home")
    env = terraform_env(tmp / "home")
    variables = ["-var=run_id=bench", f"-var=sandbox_root={tmp}/sb", '-var=launcher=["/bin/true"]']
    start = time.perf_counter()
    for args in (
        ["init", "-input=false", "-no-color"],
        ["apply", "-auto-approve", "-input=false", "-no-color", *variables],
    ):
        subprocess.run([*exe.argv, *args], cwd=root, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run(
        [*exe.argv, "destroy", "-auto-approve", "-no-color", *variables],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return elapsed


SS_GET_RUNS = 20
TIMER = """kind: component
name: timer
image: debian
scripts:
  deployment: |
    start=$(date +%s%N)
    for i in $(seq {runs}); do ss-get hostname > /dev/null; done
    end=$(date +%s%N)
    ss-set statecustom "ss-get $(( (end - start) / {runs} / 1000 )) us"
"""
TIMED = """kind: deployment
name: ssget-bench
nodes:
  t:
    component: timer
    cloud: local
"""

#: (label, from, to): an event of the run's log as (kind, message prefix), the last one
#: matching; "start"/"exit": the command's own.
CREATED = ("created", "")
PROV, EXEC = ("state", "run entered Provisioning"), ("state", "run entered Executing")
SENDING, READY = ("state", "run entered SendingReports"), ("state", "run entered Ready")
TF_START, TF_PLAN = ("terraform", "local: apply started"), ("terraform", "local: Plan:")
TF_APPLIED, TF_DONE = ("terraform", "local: Apply complete"), ("terraform", "local: apply done")
SCRIPTS_DONE, REPORT = ("agent", "*script `deployment` finished"), ("report", "")
PHASES = [
    ("CLI start, recipes, compile", "start", CREATED),
    ("create → Provisioning entered", CREATED, PROV),
    ("Terraform: before apply", PROV, TF_START),
    ("Terraform: init + plan", TF_START, TF_PLAN),
    ("Terraform: apply (launchers)", TF_PLAN, TF_APPLIED),
    ("Terraform: after apply", TF_APPLIED, TF_DONE),
    ("agents start + Provisioning barrier", TF_DONE, EXEC),
    ("scripts (deployment)", EXEC, SCRIPTS_DONE),
    ("Executing barrier", SCRIPTS_DONE, SENDING),
    ("reporting + reports", SENDING, REPORT),
    ("SendingReports barrier", REPORT, READY),
    ("CLI exit", READY, "exit"),
]


def when(events: list[dict[str, Any]], mark: object, start: float, end: float) -> float:
    """The time of ``mark``: the command's start or exit, or the last event of that kind
    whose message starts with (``*``: contains) the text."""
    if mark == "start":
        return start
    if mark == "exit":
        return end
    assert isinstance(mark, tuple)
    kind, text = mark
    found = [
        e["at"]
        for e in events
        if e["kind"] == kind
        and (text[1:] in e["message"] if text.startswith("*") else e["message"].startswith(text))
    ]
    if not found:
        return math.nan
    return float(found[-1])


def phases(doc: dict[str, Any], start: float, end: float) -> dict[str, float]:
    events = doc["events"]
    return {
        label: when(events, b, start, end) - when(events, a, start, end) for label, a, b in PHASES
    }


def ss_get(tmp: Path) -> float:
    """Seconds of one `ss-get` of a set value, process start to exit (mean of 20)."""
    root = tmp / "recipes"
    root.mkdir()
    (root / "timer.yaml").write_text(TIMER.format(runs=SS_GET_RUNS), encoding="utf-8")
    (root / "ssget-bench.yaml").write_text(TIMED, encoding="utf-8")
    env = dict(os.environ, SLIPSTREAM_HOME=str(tmp / "home"))
    cmd = [sys.executable, "-m", "engine.cli.app"]
    done = subprocess.run(
        [*cmd, "deploy", str(root / "ssget-bench.yaml"), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    doc = json.loads(done.stdout)
    subprocess.run([*cmd, "destroy", doc["id"]], cwd=REPO, env=env, capture_output=True)
    shown = doc["params"].get("t.1:statecustom", "")
    if doc["state"] != "Ready" or not shown.startswith("ss-get "):
        raise SystemExit(f"ss-get bench ended in {doc['state']}: {doc.get('abort')} {shown!r}")
    return int(shown.split()[1]) / 1e6


def deploy(tmp: Path) -> tuple[float, float, dict[str, float]]:
    """Seconds for `slipstream deploy webapp` to Ready, for `destroy`, and per phase."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(tmp / "home"))
    cmd = [sys.executable, "-m", "engine.cli.app"]
    began = time.time()
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, "deploy", "webapp", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    doc = json.loads(done.stdout)
    if doc["state"] != "Ready":
        raise SystemExit(f"deploy ended in {doc['state']}: {doc.get('abort')}")
    split = phases(doc, began, began + elapsed)
    start = time.perf_counter()
    subprocess.run([*cmd, "destroy", doc["id"]], cwd=REPO, env=env, check=True, capture_output=True)
    return elapsed, time.perf_counter() - start, split


def compile_s() -> float:
    """Seconds to load and compile `webapp` in this process (already warm)."""
    config = CloudsConfig.default()
    start = time.perf_counter()
    compile_text(RecipeLoader(None, config).deployment("webapp"), config)
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    floors, deploys, destroys, splits, gets = [], [], [], [], []
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    compile_s()
    compiled = statistics.median(compile_s() for _ in range(5))
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            floors.append(floor(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            up, down, split = deploy(Path(tmp))
            deploys.append(up)
            destroys.append(down)
            splits.append(split)
        with tempfile.TemporaryDirectory() as tmp:
            gets.append(ss_get(Path(tmp)))
    f, d = statistics.median(floors), statistics.median(deploys)
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, python "
        f"{platform.python_version()}; {rounds} rounds, medians"
    )
    print(f"plain terraform init+apply (floor): {f:.2f} s")
    print(
        f"slipstream deploy webapp to Ready:  {d:.2f} s (ratio {d / f:.1f}x the floor; "
        f"target 2 s: {'PASS' if d < 2 else 'FAIL'})"
    )
    print("  phases (median of the rounds, from the run's events):")
    for label, *_ in PHASES:
        print(f"    {label:<38} {statistics.median(s[label] for s in splits):6.2f} s")
    print(f"    (of the first: loading and compiling `webapp` alone {compiled * 1000:.0f} ms)")
    print(f"slipstream destroy:                 {statistics.median(destroys):.2f} s")
    g = statistics.median(gets)
    print(
        f"one ss-get of a set value, process start to exit: {g * 1000:.1f} ms "
        f"(target 30 ms: {'PASS' if g < 0.030 else 'FAIL'})"
    )
    print("load average (1, 5, 15 min) after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
