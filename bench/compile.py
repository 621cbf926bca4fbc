"""Time to load + validate + compile a deployment of 1,000 instances over 20 nodes and
3 clouds (local, aws, openstack). Target: under 1 second on the 2-core reference machine.

Run: ``python bench/compile.py`` (prints one line per figure).
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.canonical import dumps
from engine.compile.compiler import compile_deployment
from engine.recipes.clouds import parse_clouds_text
from engine.recipes.loader import RecipeLoader

NODES, PER_NODE, ROUNDS = 20, 50, 7
CLOUDS = (
    "clouds:\n  aws-eu: {type: aws, region: eu-west-1}\n  os-lab: {type: openstack, cloud: lab}\n"
)


def write_recipes(root: Path) -> Path:
    """20 components (each inheriting a shipped base) and one deployment wiring them."""
    lines = ["kind: deployment", "name: big", "nodes:"]
    for n in range(NODES):
        (root / f"svc-{n}.yaml").write_text(
            f"kind: component\nname: svc-{n}\nimage: {'ubuntu' if n % 2 else 'debian'}\n"
            f"ports: [{8000 + n}]\ninputs:\n  upstream: {{default: none}}\n"
            "outputs:\n  url: {}\nscripts:\n  deployment: ss-set url http://$(ss-get hostname)\n",
            encoding="utf-8",
        )
        lines += [
            f"  n{n}:",
            f"    component: svc-{n}",
            f"    multiplicity: {PER_NODE}",
            "    cloud: [local, aws-eu, os-lab]",
        ]
        if n:
            lines += ["    inputs:", f"      upstream: {{from: n{n - 1}:url}}"]
    path = root / "big.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def once(root: Path, path: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    clouds = parse_clouds_text(CLOUDS)
    dep = RecipeLoader(root, clouds).deployment(path, require_values=True)
    texts = {k: dumps(v) for k, v in compile_deployment(dep, clouds).items()}
    elapsed = time.perf_counter() - start
    return elapsed, dep.instance_count(), sum(len(t) for t in texts.values())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_recipes(root)
        cold, instances, size = once(root, path)
        warm = [once(root, path)[0] for _ in range(ROUNDS)]
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"instances: {instances} over {NODES} nodes and 3 clouds; output {size / 1e6:.2f} MB")
    print(f"first run (imports warm, caches cold): {cold * 1000:.0f} ms")
    print(
        f"median of {ROUNDS}: {statistics.median(warm) * 1000:.0f} ms; best "
        f"{min(warm) * 1000:.0f} ms (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
