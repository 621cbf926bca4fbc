"""Wall time of `slipstream deploy webapp` on the local cloud, beside the floor: plain
`terraform init` + `apply` of the same compiled root (launcher replaced by /bin/true, so
only Terraform's own work is timed). Prints both and their ratio.

Run: ``python bench/deploy.py [rounds]`` (default 3 rounds; each deploys and destroys).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def deploy(tmp: Path) -> tuple[float, float]:
    """Seconds for `slipstream deploy webapp` to Ready, and for `destroy`."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(tmp / "home"))
    cmd = [sys.executable, "-m", "engine.cli.app"]
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
    start = time.perf_counter()
    subprocess.run([*cmd, "destroy", doc["id"]], cwd=REPO, env=env, check=True, capture_output=True)
    return elapsed, time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    floors, deploys, destroys = [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            floors.append(floor(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            up, down = deploy(Path(tmp))
            deploys.append(up)
            destroys.append(down)
    f, d = statistics.median(floors), statistics.median(deploys)
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, python "
        f"{platform.python_version()}; {rounds} rounds, medians"
    )
    print(f"plain terraform init+apply (floor): {f:.2f} s")
    print(f"slipstream deploy webapp to Ready:  {d:.2f} s (ratio {d / f:.1f}x the floor)")
    print(f"slipstream destroy:                 {statistics.median(destroys):.2f} s")


if __name__ == "__main__":
    main()
