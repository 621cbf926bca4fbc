"""Each shipped deployment × each mapped cloud compiles to a reviewed golden file.

Regenerate after a deliberate change with ``pytest tests/compile/test_golden.py --update-golden``
and review the diff; never edit the expected files by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compile.compiler import compile_text
from engine.recipes.clouds import load_clouds
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from templates import TEMPLATES_DIR

GOLDEN = Path(__file__).parent / "golden"
CLOUDS = load_clouds(GOLDEN / "clouds.yaml")
DEPLOYMENTS = sorted(p.stem for p in (TEMPLATES_DIR / "deployments").glob("*.yaml"))
TARGETS = CLOUDS.names()


def compiled(deployment: str, cloud: str) -> str:
    """The deployment with every node placed on ``cloud``, as canonical JSON."""
    loader = RecipeLoader(None, CLOUDS)
    names = list(loader.deployment(deployment).nodes)
    overrides = Overrides.parse(clouds=[f"{n}={cloud}" for n in names])
    dep = RecipeLoader(None, CLOUDS).deployment(deployment, overrides, require_values=True)
    texts = compile_text(dep, CLOUDS)
    assert list(texts) == [cloud]
    return texts[cloud]


def test_every_mapped_cloud_type_has_a_golden_target() -> None:
    from providers_map import cloud_types

    assert sorted({CLOUDS.get(t).type for t in TARGETS}) == cloud_types()


@pytest.mark.parametrize("cloud", TARGETS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_golden(deployment: str, cloud: str, update_golden: bool) -> None:
    text = compiled(deployment, cloud)
    path = GOLDEN / deployment / f"{cloud}.tf.json"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run pytest with --update-golden and review it"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("cloud", TARGETS)
def test_compiling_is_deterministic_across_processes(cloud: str) -> None:
    """Same input, same bytes, whatever the hash seed of the process."""
    import subprocess
    import sys

    code = (
        "import sys; from tests.compile.test_golden import compiled; "
        f"sys.stdout.write(compiled('webapp', {cloud!r}))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            cwd=Path(__file__).parents[2],
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    assert outputs == {compiled("webapp", cloud)}
