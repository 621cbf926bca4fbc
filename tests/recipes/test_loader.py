"""Valid recipes load into frozen, defaulted types; inheritance and overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import Mark, RecipeInvalid
from engine.recipes.clouds import CloudsConfig, parse_clouds_text
from engine.recipes.loader import RecipeLoader
from engine.recipes.model import FromInput, FromOutput, LiteralValue
from engine.recipes.overrides import Overrides
from providers_map.size import Size

CLOUDS = parse_clouds_text(
    "clouds:\n  rack: {type: ssh, hosts: [{address: 192.0.2.1}, {address: 192.0.2.2}]}\n"
)


def write(root: Path, name: str, text: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "base",
        """\
kind: component
name: base
image: debian-12
size: {cpu: 2, ram_gb: 3}
ports: [22]
packages: [python3, curl]
inputs:
  level: {type: int, default: 1}
outputs:
  ready: {}
scripts:
  post_install: echo base
  deployment: echo base-deploy
clouds:
  aws: {instance_type: t3.large}
""",
    )
    write(
        tmp_path,
        "child",
        """\
kind: component
name: child
image: base
ports: [8080, 22]
packages: [curl, jq]
inputs:
  level: {type: int, default: 5}
  mode: {type: enum, choices: [fast, safe], default: safe}
  flag: {type: bool, default: True}
  peer: {}
outputs:
  url: {description: link}
scripts:
  deployment: echo child-deploy
""",
    )
    write(
        tmp_path,
        "app",
        """\
kind: deployment
name: app
inputs:
  version: {default: 1.10, locked: true}
  size: {type: int, default: 3}
timeout: 90s
nodes:
  a:
    component: child
    cloud: [local, rack]
    multiplicity: 3
    inputs:
      peer: {from: b:url}
  b:
    component: child
    inputs:
      peer: {from: a.3:url}
      level: 7
      mode: fast
""",
    )
    return tmp_path


def test_inheritance_merges_down_the_chain(recipes: Path) -> None:
    child = RecipeLoader(recipes, CLOUDS).component("child", Mark("t", 0, 0))
    assert child is not None
    assert child.chain == ("base", "child")
    assert child.image == "debian-12"
    assert child.size == Size(2, 3.0, 10)
    assert child.ports == (22, 8080)
    assert child.packages == ("python3", "curl", "jq")
    assert [p.component for p in child.scripts["deployment"]] == ["base", "child"]
    assert [p.text for p in child.scripts["post_install"]] == ["echo base"]
    assert child.inputs["level"].default == "5"
    assert child.inputs["flag"].default == "true"
    assert set(child.outputs) == {"ready", "url"}
    assert dict(child.clouds) == {"aws": {"instance_type": "t3.large"}}


def test_deployment_bindings_and_defaults(recipes: Path) -> None:
    dep = RecipeLoader(recipes, CLOUDS).deployment(recipes / "app.yaml")
    assert dep.timeout_s == 90
    assert dep.keep_running == "on-success"
    assert dep.values["version"] == "1.10"  # the YAML source text, not the float 1.1
    a, b = dep.nodes["a"], dep.nodes["b"]
    assert a.bindings["peer"] == FromOutput("b", 1, "url")
    assert b.bindings["peer"] == FromOutput("a", 3, "url")  # both ways is legal
    assert b.bindings["level"] == LiteralValue("7")
    assert [a.cloud_of(i) for i in a.instance_ids()] == ["local", "rack", "local"]
    assert dep.clouds_used() == ("local", "rack")
    assert dep.instance_count() == 4


def test_overrides_apply(recipes: Path) -> None:
    overrides = Overrides.parse(inputs=["size=9"], clouds=["b=rack"], multiplicity=["a=4"])
    dep = RecipeLoader(recipes, CLOUDS).deployment(recipes / "app.yaml", overrides)
    assert dep.values["size"] == "9"
    assert dep.nodes["b"].clouds == ("rack",)
    assert dep.nodes["a"].multiplicity == 4


def test_overrides_are_checked_like_the_file(recipes: Path) -> None:
    overrides = Overrides.parse(inputs=["version=2", "size=big"], multiplicity=["a=1"])
    with pytest.raises(RecipeInvalid) as err:
        RecipeLoader(recipes, CLOUDS).deployment(recipes / "app.yaml", overrides)
    text = str(err.value)
    assert "input `version` is locked" in text
    assert "input `size` expects a whole number, got `big`" in text
    # a.3 no longer exists once a has one instance
    assert "`a.3:url`: node `a` has 1 instance(s)" in text


def test_content_hash_follows_install_steps(recipes: Path) -> None:
    first = RecipeLoader(recipes, CLOUDS).component("child", Mark("t", 0, 0))
    text = (recipes / "base.yaml").read_text().replace("echo base\n", "echo changed\n")
    (recipes / "base.yaml").write_text(text)
    second = RecipeLoader(recipes, CLOUDS).component("child", Mark("t", 0, 0))
    assert first is not None and second is not None
    assert first.content_hash != second.content_hash
    text = (recipes / "base.yaml").read_text().replace("echo base-deploy", "echo other")
    (recipes / "base.yaml").write_text(text)
    third = RecipeLoader(recipes, CLOUDS).component("child", Mark("t", 0, 0))
    assert third is not None and third.content_hash == second.content_hash


def test_root_components_shadow_templates(tmp_path: Path) -> None:
    write(tmp_path, "ubuntu", "kind: component\nname: ubuntu\nimage: rocky-9\n")
    comp = RecipeLoader(tmp_path, CloudsConfig.default()).component("ubuntu", Mark("t", 0, 0))
    assert comp is not None and comp.image == "rocky-9"
    shipped = RecipeLoader(None, CloudsConfig.default()).component("ubuntu", Mark("t", 0, 0))
    assert shipped is not None and shipped.image == "ubuntu-22.04"


def test_missing_deployment_input_value_required_at_deploy(tmp_path: Path) -> None:
    write(
        tmp_path,
        "d",
        "kind: deployment\nname: d\ninputs:\n  v: {}\nnodes:\n  n: {component: ubuntu}\n",
    )
    loader = RecipeLoader(tmp_path, CloudsConfig.default())
    assert loader.deployment(tmp_path / "d.yaml").values["v"] is None
    with pytest.raises(RecipeInvalid, match=r"d.yaml:4:3: input `v` has no default"):
        RecipeLoader(tmp_path, CloudsConfig.default()).deployment(
            tmp_path / "d.yaml", require_values=True
        )
    dep = RecipeLoader(tmp_path, CloudsConfig.default()).deployment(
        tmp_path / "d.yaml", Overrides.parse(inputs=["v=x"]), require_values=True
    )
    assert dep.values["v"] == "x"
    assert isinstance(FromInput("v").text, str)


def test_node_input_override_replaces_one_nodes_binding(recipes: Path) -> None:
    overrides = Overrides.parse(inputs=["a:peer=http://fixed", "b:level=08", "size=4"])
    dep = RecipeLoader(recipes, CLOUDS).deployment(recipes / "app.yaml", overrides)
    assert dep.nodes["a"].bindings["peer"] == LiteralValue("http://fixed")  # was a mapping
    assert dep.nodes["b"].bindings["level"] == LiteralValue("8")  # checked and normalised
    assert dep.nodes["b"].bindings["peer"] == FromOutput("a", 3, "url")  # others untouched
    assert dep.values["size"] == "4"


def test_builtin_names_agree_between_recipes_and_coordination() -> None:
    from engine.coordination import keys
    from engine.recipes.inputs import INSTANCE_BUILTINS, RESERVED

    assert set(keys.INSTANCE_BUILTINS) == INSTANCE_BUILTINS
    assert set(keys.NODE_KEYS) <= RESERVED


def test_slipstream_style_names_optional_inputs_and_output_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "procSAR",
        """\
kind: component
name: procSAR
image: ubuntu-22.04
inputs:
  master: {}
  queue: {optional: true}
outputs:
  done: {default: "no"}
""",
    )
    write(
        tmp_path,
        "Batch_Cluster",
        """\
kind: deployment
name: Batch_Cluster
inputs:
  note: {optional: true}
nodes:
  torque_master: {component: ubuntu}
  procSAR:
    component: procSAR
    inputs:
      master: {from: torque_master:hostname}
""",
    )
    dep = RecipeLoader(tmp_path, CLOUDS).deployment("Batch_Cluster", require_values=True)
    node = dep.nodes["procSAR"]
    assert node.bindings["master"] == FromOutput("torque_master", 1, "hostname")
    assert "queue" not in node.bindings
    assert node.component.outputs["done"].default == "no"
    assert dep.values["note"] is None


def test_slipstreams_node_multiplicity_and_cloudservice_parameters(recipes: Path) -> None:
    overrides = Overrides.parse(inputs=["a:multiplicity=5", "b:cloudservice=rack"])
    assert (dict(overrides.multiplicity), dict(overrides.clouds)) == ({"a": 5}, {"b": ("rack",)})
    assert dict(overrides.node_inputs) == {}
    dep = RecipeLoader(recipes, CLOUDS).deployment(recipes / "app.yaml", overrides)
    assert dep.nodes["a"].multiplicity == 5
    assert dep.nodes["b"].clouds == ("rack",)
    with pytest.raises(RecipeInvalid, match="multiplicity must be a whole number >= 0, got `x`"):
        Overrides.parse(inputs=["a:multiplicity=x"])
