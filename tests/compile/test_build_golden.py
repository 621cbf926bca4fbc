"""Image builds and deploys from built images compile to reviewed golden files.

- ``golden/build/<component>/<cloud>.tf.json``: the root that snapshots a prepared build
  instance, for every golden cloud that snapshots through Terraform (``aws``:
  ``aws_ami_from_instance``), checked against the provider schema too.
- ``golden/built/webapp/<cloud>.tf.json``: ``webapp`` whose ``web`` node boots a built image.

Regenerate with ``pytest tests/compile/test_build_golden.py --update-golden``; review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.canonical import dumps
from engine.compile.compiler import compile_deployment
from engine.compile.images import build_deployment, build_root, snapshot_address
from engine.errors import Mark
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from providers_map import mapping_for
from providers_map.base import SnapshotUnsupported
from tests.compile.test_golden import CLOUDS, GOLDEN
from tests.providers_map.schema_check import problems, snapshot

SNAPSHOTTING = [n for n in CLOUDS.names() if mapping_for(CLOUDS.get(n).type).snapshot_resource]
AMI = "ami-0123456789abcdef0"


def _check_golden(path: Path, text: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run pytest with --update-golden and review it"
    assert text == path.read_text(encoding="utf-8")


def _component(name: str):  # type: ignore[no-untyped-def]
    comp = RecipeLoader(None, CLOUDS).component(name, Mark(name, 0, 0))
    assert comp is not None
    return comp


def test_aws_is_among_the_snapshotting_golden_clouds() -> None:
    assert "aws" in {CLOUDS.get(n).type for n in SNAPSHOTTING}


@pytest.mark.parametrize("cloud", SNAPSHOTTING)
def test_build_root_golden(cloud: str, update_golden: bool) -> None:
    comp = _component("webapp-web")
    doc = build_root(comp, cloud, CLOUDS)
    _check_golden(GOLDEN / "build" / comp.name / f"{cloud}.tf.json", dumps(doc), update_golden)
    mapping = mapping_for(CLOUDS.get(cloud).type)
    snap = snapshot_address(comp, mapping.type)
    rtype, _, name = snap.partition(".")
    block = doc["resource"][rtype][name]
    assert 'webapp-web[\\"1\\"]' in json.dumps(block)  # the build instance's
    if mapping.type == "aws":
        assert block["source_instance_id"] == '${aws_instance.webapp-web["1"].id}'
    assert doc["output"]["image"]["value"] == f"${{{snap}.id}}"


def test_aws_build_root_matches_the_provider_schema() -> None:
    aws = next(n for n in SNAPSHOTTING if CLOUDS.get(n).type == "aws")
    doc = build_root(_component("webapp-web"), aws, CLOUDS)
    assert problems(json.loads(dumps(doc)), {"aws": snapshot("aws")}) == []


def test_build_runs_only_the_install_steps_of_the_chain() -> None:
    comp = _component("webapp-web")
    dep = build_deployment(comp, "local")
    scripts = dep.nodes[comp.name].component.scripts
    assert set(scripts) <= {"pre_install", "post_install"}
    assert set(comp.scripts) - set(scripts)  # deployment (at least) is left out
    assert dep.keep_running == "always"  # the factory snapshots at Ready


def test_clouds_without_a_snapshot_resource_have_no_build_root() -> None:
    ssh = next(n for n in CLOUDS.names() if CLOUDS.get(n).type == "ssh")
    with pytest.raises(SnapshotUnsupported, match="makes no image through Terraform"):
        build_root(_component("webapp-web"), ssh, CLOUDS)


@pytest.mark.parametrize("cloud_type", ["aws", "local"])
def test_deploy_from_a_built_image_golden(cloud_type: str, update_golden: bool) -> None:
    cloud = next(n for n in CLOUDS.names() if CLOUDS.get(n).type == cloud_type)
    names = list(RecipeLoader(None, CLOUDS).deployment("webapp").nodes)
    overrides = Overrides.parse(clouds=[f"{n}={cloud}" for n in names])
    dep = RecipeLoader(None, CLOUDS).deployment("webapp", overrides, require_values=True)
    image = AMI if cloud_type == "aws" else "sha256:" + "ab" * 32
    doc = compile_deployment(dep, CLOUDS, {("web", cloud): image})[cloud]
    _check_golden(GOLDEN / "built" / "webapp" / f"{cloud}.tf.json", dumps(doc), update_golden)
    text = dumps(doc)
    assert image in text
    plain = compile_deployment(dep, CLOUDS)[cloud]
    assert plain != doc
    if cloud_type == "aws":
        assert doc["resource"]["aws_instance"]["web"]["ami"] == AMI
        assert doc["resource"]["aws_instance"]["db"]["ami"].startswith("${data.aws_ami.")
    else:
        web = doc["resource"]["terraform_data"]["web"]
        assert web["input"]["built_image"] == image
        assert web["provisioner"][0]["local-exec"]["environment"]["SLIPSTREAM_IMAGE"]
        assert "built_image" not in doc["resource"]["terraform_data"]["db"]["input"]
