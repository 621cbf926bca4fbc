"""Deploy time of a component with slow install steps, with and without a built image, on
the local cloud. The component's ``post_install`` sleeps ``SLEEP`` seconds (default 3);
``slipstream build`` bakes it once, then each round deploys it from the image and deploys
a copy under another name (same steps but for a comment naming it, so another content
hash and no image: components with identical install steps share images), destroying
both. Prints per-round figures and medians.

Run: ``python bench/images.py [rounds]`` (default 2; each round is two real deployments).
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
SLEEP = float(os.environ.get("SLEEP", "3"))

COMPONENT = """\
kind: component
name: {name}
description: slow install steps
image: debian-12
scripts:
  post_install: |
    # {name}
    sleep {sleep}
    echo ready > prepared
  deployment: |
    test -f prepared
"""


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="bench")
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"slipstream {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def timed_deploy(home: Path, root: Path, name: str) -> tuple[float, str]:
    start = time.perf_counter()
    doc = json.loads(cli(home, "deploy", name, "--root", str(root), "--json").stdout)
    elapsed = time.perf_counter() - start
    cli(home, "destroy", doc["id"])
    return elapsed, doc["id"]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "recipes"
        root.mkdir()
        for name in ("baked", "unbaked"):
            (root / f"{name}.yaml").write_text(COMPONENT.format(name=name, sleep=SLEEP))
        start = time.perf_counter()
        built = json.loads(
            cli(home, "build", "baked", "--cloud", "local", "--root", str(root), "--json").stdout
        )["builds"][0]
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        cli(home, "build", "baked", "--cloud", "local", "--root", str(root))
        noop_s = time.perf_counter() - start
        with_image, without = [], []
        for i in range(rounds):
            a, _ = timed_deploy(home, root, "baked")
            b, _ = timed_deploy(home, root, "unbaked")
            with_image.append(a)
            without.append(b)
            print(f"round {i + 1}: from image {a:.2f}s, with install steps {b:.2f}s")
        print(f"host: {platform.node()} ({os.cpu_count()} cpus), post_install sleeps {SLEEP:g}s")
        size = built["size_bytes"]
        print(f"build: {build_s:.2f}s (image {size} bytes); no-op build {noop_s:.2f}s")
        print(
            f"deploy median: from image {statistics.median(with_image):.2f}s, "
            f"with install steps {statistics.median(without):.2f}s, "
            f"saved {statistics.median(without) - statistics.median(with_image):.2f}s"
        )


if __name__ == "__main__":
    main()
