"""Every golden root passes the offline structural check (``tfstructure``): known
top-level blocks, well-formed variables and outputs, and every reference to a variable,
local, resource or data source pointing at one the root declares. Broken copies prove the
check notices."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.compile.compiler import compile_deployment
from engine.recipes.loader import RecipeLoader
from tests.compile.test_golden import CLOUDS, DEPLOYMENTS, GOLDEN, TARGETS
from tests.compile.tfstructure import interpolations, problems


def golden(deployment: str, cloud: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / deployment / f"{cloud}.tf.json").read_text())
    return loaded


@pytest.mark.parametrize("cloud", TARGETS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_golden_root_is_well_formed(deployment: str, cloud: str) -> None:
    doc = golden(deployment, cloud)
    assert problems(doc) == []
    assert "instances" in doc["output"]


def _retarget(path: list[str], old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = node[path[-1]].replace(old, new)

    return mutate


BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "undeclared variable": (
        "aws-eu",
        _retarget(["resource", "aws_security_group", "db", "name_prefix"], "var.run_id", "var.run"),
        "resource.aws_security_group.db.name_prefix: `var.run` is not a declared variable",
    ),
    "undeclared resource": (
        "gcp-eu",
        _retarget(
            ["output", "instances", "value"],
            "google_compute_instance.lb",
            "google_compute_instance.lbb",
        ),
        "output.instances.value: `google_compute_instance.lbb` is not a declared resource",
    ),
    "undeclared data source": (
        "os-lab",
        _retarget(
            ["resource", "openstack_compute_instance_v2", "web", "image_id"],
            "ubuntu-22-04",
            "ubuntu-20-04",
        ),
        "resource.openstack_compute_instance_v2.web.image_id: "
        "`data.openstack_images_image_v2.ubuntu-20-04` is not a declared data source",
    ),
    "undeclared local": (
        "ibm-eu",
        _retarget(["output", "instances", "value"], "local.floating_ips", "local.floating"),
        "output.instances.value: `local.floating` is not a declared local value",
    ),
    "each outside a for_each": (
        "exo-gva",
        lambda d: d["resource"]["exoscale_security_group"]["db"].update(name="${each.key}"),
        "resource.exoscale_security_group.db.name: `each.key` is used outside a for_each",
    ),
    "self outside a provisioner": (
        "rack",
        lambda d: d["resource"]["terraform_data"]["db"]["input"].update(x="${self.input.host}"),
        "resource.terraform_data.db.input.x: `self.input` is used outside a provisioner or "
        "connection",
    ),
    "unknown top-level block": (
        "local",
        lambda d: d.update(resources={}),
        "resources: not a top-level block of a Terraform root",
    ),
    "output without value": (
        "az-we",
        lambda d: d["output"]["instances"].pop("value"),
        "output.instances: has no value",
    ),
    "bad variable key": (
        "one-lab",
        lambda d: d["variable"]["run_id"].update(defualt="x"),
        "variable.run_id: unknown key `defualt`",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_root_is_caught(case: str) -> None:
    cloud, mutate, expected = BROKEN[case]
    doc = copy.deepcopy(golden("webapp", cloud))
    mutate(doc)
    assert expected in problems(doc)


def test_escaped_text_is_not_an_expression() -> None:
    text = '$${var.nope} %%{ if x } ${merge(var.a, "${local.b} q.r")} $$${var.also_not}'
    assert interpolations(text) == ['merge(var.a, "${local.b}    ")']
    assert problems({"output": {"o": {"value": text}}}) == [
        "output.o.value: `var.a` is not a declared variable",
        "output.o.value: `local.b` is not a declared local value",
    ]


@pytest.mark.parametrize("cloud", TARGETS)
def test_slipstream_style_names_compile_to_well_formed_roots(cloud: str, tmp_path: Path) -> None:
    """Upper case and '_' in deployment and node names (`procSAR`, `torque_master`) stay
    valid Terraform names on every cloud."""
    (tmp_path / "Batch_Cluster.yaml").write_text(
        "kind: deployment\nname: Batch_Cluster\nnodes:\n"
        f"  torque_master: {{component: ubuntu, cloud: {cloud}}}\n"
        f"  procSAR: {{component: ubuntu, cloud: {cloud}, multiplicity: 2}}\n",
        encoding="utf-8",
    )
    dep = RecipeLoader(tmp_path, CLOUDS).deployment("Batch_Cluster", require_values=True)
    doc = compile_deployment(dep, CLOUDS)[cloud]
    assert problems(doc) == []
    resources = {name for kind in doc["resource"].values() for name in kind}
    assert {"torque_master", "procSAR"} <= resources
