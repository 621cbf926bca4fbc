"""What clouds.yaml and the size of a run may be (issue 16, items 14 and 15): `local` is
never redefined, one multiplicity limit holds for recipes and --multiplicity, `local`
runs must fit the host's memory, and an empty clouds.yaml is no clouds."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import engine.runs.capacity as capacity
from engine.cli.app import app
from engine.errors import RecipeInvalid
from engine.recipes.clouds import load_clouds, parse_clouds_text
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from engine.recipes.schema import MAX_MULTIPLICITY


def test_item_14_clouds_yaml_may_not_redefine_local() -> None:
    with pytest.raises(RecipeInvalid) as caught:
        parse_clouds_text("clouds:\n  local: {type: aws, region: eu-west-1}\n")
    assert str(caught.value) == (
        "clouds.yaml:2:3: clouds.local: `local` is the embedded cloud (this host) and "
        "cannot be redefined; give this cloud another name"
    )
    with pytest.raises(RecipeInvalid, match="cannot be redefined"):
        parse_clouds_text("clouds:\n  local: {type: local, hosts: []}\n")
    same = parse_clouds_text("clouds:\n  local: {type: local}\n")  # what DESIGN shows
    assert same.get("local").type == "local"


def test_item_14_one_multiplicity_limit_for_recipes_and_the_command_line(tmp_path: Path) -> None:
    assert MAX_MULTIPLICITY == 10_000
    assert Overrides.parse(multiplicity=["web=10000"]).multiplicity["web"] == 10_000
    for value in ("10001", "99999", "100000"):
        with pytest.raises(RecipeInvalid) as caught:
            Overrides.parse(multiplicity=[f"web={value}"])
        assert str(caught.value) == (
            f"--multiplicity web={value}: multiplicity must be a whole number from 0 to "
            f"10000, got `{value}`"
        )
    (tmp_path / "big.yaml").write_text(
        "kind: deployment\nname: big\nnodes:\n  n: {component: ubuntu, multiplicity: 10001}\n"
    )
    loader = RecipeLoader(tmp_path, load_clouds(None))
    with pytest.raises(RecipeInvalid, match="multiplicity: must be <= 10000, got 10001"):
        loader.deployment(tmp_path / "big.yaml")


def test_item_14_local_runs_must_fit_the_hosts_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = capacity.available_mib()
    assert real is not None and real > 0
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8388608 kB\nMemAvailable:  4194304 kB\n")
    monkeypatch.setattr(capacity, "MEMINFO", meminfo)
    home = tmp_path / "home"
    env = {"SLIPSTREAM_HOME": str(home), "SLIPSTREAM_USER": "tester"}
    result = CliRunner().invoke(app, ["deploy", "webapp", "--multiplicity", "web=500"], env=env)
    assert result.exit_code == 1
    assert result.stderr == (
        "deploy: `local` cannot take 502 instances: each needs about 24 MiB, 11.8 GiB in "
        "all, and this host has 4.0 GiB of memory available\n"
    )
    assert list((home / "runs").glob("*")) == []  # nothing was created


@pytest.mark.parametrize("text", ["", "\n", "# no clouds yet\n"])
def test_item_15_an_empty_clouds_yaml_is_no_clouds(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    assert load_clouds(path).names() == ["local"]
