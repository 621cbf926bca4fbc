"""The CLI's contract: exit codes 0/1/2, results on stdout, --json documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from typer.testing import CliRunner

from engine.cli.app import app
from engine.cli.options import overrides
from templates import TEMPLATES_DIR

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_validate_templates_ok() -> None:
    code, out = invoke("validate", str(TEMPLATES_DIR), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert len(doc["files"]) >= 4


def test_validate_reports_every_problem_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: component\nname: Bad!\nimage: ubuntu-22.04\ncolour: red\n")
    code, out = invoke("validate", str(bad), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert [(p["line"], p["column"]) for p in problems] == [(2, 7), (4, 1)]
    assert problems[1]["message"].startswith("unknown key `colour`")


def test_compile_writes_one_root_per_cloud(tmp_path: Path) -> None:
    clouds = Path(__file__).parent.parent / "compile" / "golden" / "clouds.yaml"
    out = tmp_path / "out"
    code, text = invoke(
        "compile",
        "webapp",
        "--cloud",
        "web=local,rack",
        "--clouds",
        str(clouds),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, text
    doc = json.loads(text)
    assert sorted(doc["roots"]) == ["local", "rack"]
    local = json.loads((out / "local" / "main.tf.json").read_text())
    rack = json.loads((out / "rack" / "main.tf.json").read_text())
    # round-robin: web.1 on local, web.2 on rack; db and lb default to local
    assert sorted(local["resource"]["terraform_data"]) == ["db", "lb", "web"]
    assert list(local["resource"]["terraform_data"]["web"]["for_each"]) == ["1"]
    assert list(rack["resource"]["terraform_data"]["web"]["for_each"]) == ["2"]


def test_compile_bad_override_is_a_usage_error(tmp_path: Path) -> None:
    code, _ = invoke("compile", "webapp", "--multiplicity", "web=many", "--out", str(tmp_path))
    assert code == 2
    assert not any(tmp_path.iterdir())


def test_compile_invalid_recipe_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, text = invoke("compile", "webapp", "--input", "nope=1", "--out", str(out))
    assert code == 1
    assert "unknown input `nope`" in text
    assert not out.exists()


def test_compile_exhausted_pool_is_a_clear_error(tmp_path: Path) -> None:
    clouds = Path(__file__).parent.parent / "compile" / "golden" / "clouds.yaml"
    result = runner.invoke(
        app,
        [
            "compile",
            "cluster",
            "--cloud",
            "worker=rack",
            "--multiplicity",
            "worker=9",
            "--clouds",
            str(clouds),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert (
        "cloud `rack`: 9 instance(s) need a host each, the pool has 5 (192.0.2.11, 192.0.2.12, "
        "192.0.2.13, 192.0.2.14, 192.0.2.15)" in result.stderr
    )
    assert not (tmp_path / "o").exists()


def test_schema_is_draft7_and_accepts_the_templates() -> None:
    code, out = invoke("schema")
    assert code == 0
    schema = json.loads(out)
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)
    files = sorted(TEMPLATES_DIR.glob("*/*.yaml"))
    assert files
    for file in files:
        errors = list(validator.iter_errors(yaml.safe_load(file.read_text())))
        assert errors == [], file


@pytest.mark.parametrize(
    "doc",
    [
        {"kind": "component", "name": "x"},  # no image
        {"kind": "deployment", "name": "x", "nodes": {"a": {"component": "b", "colour": 1}}},
        {"kind": "widget"},
    ],
)
def test_schema_rejects_bad_documents(doc: dict[str, object]) -> None:
    _, out = invoke("schema")
    assert list(Draft7Validator(json.loads(out)).iter_errors(doc))


def test_usage_error_exit_code() -> None:
    code, _ = invoke("compile")
    assert code == 2


def test_repeated_input_warns_and_keeps_the_last_value(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "compile",
            "webapp",
            "--input",
            "greeting=one",
            "--input",
            "greeting=two",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning: `--input greeting` is given twice: the last one is used" in (result.stderr)


SECRET_APP = """\
kind: deployment
name: secret-app
inputs:
  pw: {sensitive: true}
  handle: {default: nobody}
nodes:
  n: {component: ubuntu}
"""


def test_item_9_inputs_from_files_never_reach_the_command_line(tmp_path: Path) -> None:
    recipe = tmp_path / "secret-app.yaml"
    recipe.write_text(SECRET_APP, encoding="utf-8")
    (tmp_path / "pw.txt").write_text("s3cret=with=equals\n", encoding="utf-8")
    (tmp_path / "inputs.yaml").write_text("pw: from-the-file\nhandle: '@bob'\n")
    out = tmp_path / "out"
    base = ["compile", str(recipe), "--out", str(out)]

    code, _ = invoke(*base)
    assert code == 1  # pw has no default: a value must be given
    parsed = overrides([f"pw=@{tmp_path / 'pw.txt'}", "handle=@@alice"], None, None)
    assert dict(parsed.inputs) == {"pw": "s3cret=with=equals", "handle": "@alice"}
    parsed = overrides(["handle=carol"], None, None, [tmp_path / "inputs.yaml"])
    assert dict(parsed.inputs) == {"pw": "from-the-file", "handle": "carol"}
    for extra in (
        ["--input", f"pw=@{tmp_path / 'pw.txt'}"],
        ["--input-file", str(tmp_path / "inputs.yaml")],
    ):
        code, text = invoke(*base, *extra)
        assert code == 0, text

    result = runner.invoke(app, [*base, "--input", f"pw=@{tmp_path / 'nope'}"])
    assert result.exit_code == 2
    assert result.stderr == (f"usage: --input pw=@{tmp_path / 'nope'}: No such file or directory\n")
    (tmp_path / "list.yaml").write_text("pw: [a, b]\n")
    result = runner.invoke(app, [*base, "--input-file", str(tmp_path / "list.yaml")])
    assert result.exit_code == 2
    assert "list.yaml:1:5: input `pw`: expected a single value" in result.stderr


def test_item_9_the_readme_says_plain_inputs_are_public() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    readme = " ".join(text.split())
    assert "`--input KEY=@FILE`" in readme and "`--input-file FILE`" in readme
    assert "visible to every user of the host" in readme
