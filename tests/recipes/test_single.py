"""Single-component runs: `deploy <component>` synthesises a one-node deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import RecipeInvalid
from engine.recipes.clouds import parse_clouds_text
from engine.recipes.loader import RecipeLoader
from engine.recipes.model import LiteralValue
from engine.recipes.overrides import Overrides
from engine.recipes.single import load_run, names_component

CLOUDS = parse_clouds_text("clouds:\n  aws-eu: {type: aws, region: eu-west-1}\n")
GREETER = """\
kind: component
name: greeter
image: debian-12
inputs:
  greeting: {default: hello}
  target: {description: who to greet}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "greeter.yaml").write_text(GREETER)
    return tmp_path


def test_component_becomes_one_node_with_inputs_from_defaults_and_options(root: Path) -> None:
    overrides = Overrides.parse(inputs=["target=world"], clouds=["greeter=aws-eu"])
    dep = load_run(RecipeLoader(root, CLOUDS), "greeter", overrides, require_values=True)
    node = dep.nodes["greeter"]
    assert (dep.name, node.multiplicity, node.clouds) == ("greeter", 1, ("aws-eu",))
    assert node.bindings["target"] == LiteralValue("world")
    assert "greeting" not in node.bindings  # its default applies
    assert dep.source.endswith("greeter.yaml")


def test_an_input_without_default_must_be_given(root: Path) -> None:
    with pytest.raises(RecipeInvalid, match="target"):
        load_run(RecipeLoader(root, CLOUDS), "greeter", Overrides(), require_values=True)


def test_unknown_input_is_named(root: Path) -> None:
    overrides = Overrides.parse(inputs=["target=x", "colour=blue"])
    with pytest.raises(RecipeInvalid, match="has no input `colour`"):
        load_run(RecipeLoader(root, CLOUDS), "greeter", overrides, require_values=True)


def test_deployments_load_as_before(root: Path) -> None:
    loader = RecipeLoader(None, CLOUDS)
    assert not names_component(loader, "webapp")
    assert sorted(load_run(loader, "webapp").nodes) == ["db", "lb", "web"]
    assert names_component(RecipeLoader(root, CLOUDS), "greeter")
    with pytest.raises(RecipeInvalid, match="unknown deployment `nothing`"):
        load_run(RecipeLoader(root, CLOUDS), "nothing")
