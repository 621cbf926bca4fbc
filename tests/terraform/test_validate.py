"""The `local` and `ssh` roots pass a real `terraform init` and `terraform validate`
offline, and user text in a recipe reaches Terraform only as literal text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.compile.compiler import compile_text
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from tests.compile.test_golden import DEPLOYMENTS, compiled

EVIL = '${file("/etc/passwd")} %{ if true }x%{ endif } $${already} $$${x}'


@pytest.mark.parametrize("cloud", ["local", "rack"])
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_init_and_validate(deployment: str, cloud: str, tmp_path: Path, run_tf) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "main.tf.json").write_text(compiled(deployment, cloud), encoding="utf-8")
    run_tf(tmp_path, "init", "-input=false", "-no-color", "-backend=false")
    done = run_tf(tmp_path, "validate", "-json", "-no-color")
    report = json.loads(done.stdout)
    assert report["valid"] is True, report
    assert report["error_count"] == 0


def test_broken_root_fails_validate(tmp_path: Path, run_tf) -> None:  # type: ignore[no-untyped-def]
    """Control: the harness above would notice an invalid root."""
    doc = json.loads(compiled("webapp", "local"))
    doc["resource"]["terraform_data"]["db"]["input"]["run_id"] = "${var.no_such_variable}"
    (tmp_path / "main.tf.json").write_text(json.dumps(doc), encoding="utf-8")
    run_tf(tmp_path, "init", "-input=false", "-no-color", "-backend=false")
    done = run_tf(tmp_path, "validate", "-json", "-no-color", check=False)
    assert json.loads(done.stdout)["valid"] is False


def test_recipe_text_is_never_evaluated(tmp_path: Path, run_tf) -> None:  # type: ignore[no-untyped-def]
    """A plan of a local root shows the description exactly as the user wrote it."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "evil.yaml").write_text(
        "kind: deployment\nname: evil\n"
        f"description: '{EVIL}'\n"
        "nodes:\n  box:\n    component: ubuntu\n",
        encoding="utf-8",
    )
    config = CloudsConfig.default()
    dep = RecipeLoader(recipes, config).deployment(recipes / "evil.yaml")
    assert dep.description == EVIL
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf.json").write_text(compile_text(dep, config)["local"], encoding="utf-8")
    run_tf(root, "init", "-input=false", "-no-color", "-backend=false")
    run_tf(
        root,
        "plan",
        "-input=false",
        "-no-color",
        "-out=plan.bin",
        "-var=run_id=r1",
        "-var=sandbox_root=/nonexistent",
        '-var=launcher=["/bin/false"]',
    )
    shown = json.loads(run_tf(root, "show", "-json", "plan.bin").stdout)
    resources = shown["planned_values"]["root_module"]["resources"]
    descriptions = {r["values"]["input"]["description"] for r in resources}
    assert descriptions == {EVIL}
    assert "root:" not in json.dumps(shown)  # nothing of /etc/passwd leaked in
