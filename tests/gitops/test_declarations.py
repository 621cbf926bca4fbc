"""``slipstream.yaml``: valid files load, every problem is located, paths stay inside."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from engine.errors import RecipeInvalid
from engine.gitops.declarations import (
    DECLARATIONS_SCHEMA,
    load_declarations,
    parse_declarations,
)


def test_a_full_declaration_loads_with_its_overrides() -> None:
    (decl,) = parse_declarations("""\
deployments:
  web-prod:
    recipe: apps/webapp.yaml
    clouds: {web: [aws-eu, os-lab], db: local}
    inputs: {version: 1.10, "web:greeting": hello}
    multiplicity: {web: 3}
    apply: approve
    prune: true
    approvers: [alice]
""")
    assert (decl.name, decl.apply, decl.prune, decl.approvers) == (
        "web-prod",
        "approve",
        True,
        ("alice",),
    )
    overrides = decl.overrides()
    assert overrides.inputs == {"version": "1.10"}  # as written, not the float 1.1
    assert overrides.node_inputs == {"web": {"greeting": "hello"}}
    assert overrides.clouds == {"web": ("aws-eu", "os-lab"), "db": ("local",)}
    assert overrides.multiplicity == {"web": 3}
    assert decl.ref(Path("/co")) == Path("/co/apps/webapp.yaml")


def test_every_problem_is_reported_at_its_line_and_column() -> None:
    with pytest.raises(RecipeInvalid) as err:
        parse_declarations("""\
deployments:
  ok:
    recipe: webapp
  bad:
    recipe: a/../../etc/passwd.yaml
    colour: red
    apply: sometimes
  "no good":
    recipe: webapp
""")
    text = str(err.value)
    assert "slipstream.yaml:6:5: unknown key `colour`" in text
    assert "slipstream.yaml:7:12:" in text and "auto, approve" in text
    assert "slipstream.yaml:8:3:" in text  # the bad name, where it is written


def test_a_recipe_path_cannot_leave_the_repository() -> None:
    with pytest.raises(RecipeInvalid, match=r"slipstream.yaml:3:13: .*inside the repository"):
        parse_declarations("deployments:\n  x:\n    recipe: a/../../b.yaml\n")


def test_no_file_declares_nothing_and_the_schema_is_valid(tmp_path: Path) -> None:
    assert load_declarations(tmp_path) == []
    Draft7Validator.check_schema(DECLARATIONS_SCHEMA)
    (tmp_path / "slipstream.yaml").write_text("deployments: {}\n")
    assert load_declarations(tmp_path) == []


def test_the_cli_prints_the_schema_for_editors() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.app", "schema", "--gitops"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == json.loads(json.dumps(DECLARATIONS_SCHEMA))
