"""Which recipe files are taken (issue 16, items 6 and 7): lookup by name never leaves a
folder that is not a recipe root; files others could have written, special files and
symlinks out of the root are refused with a reason; the run says where each recipe is from.

The commands run as a user would, from a working folder (``CliRunner`` in ``cwd``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from engine.cli.app import app
from engine.service import Service
from templates import TEMPLATES_DIR

PLANTED = """\
kind: component
name: webapp-web
image: rocky-9
inputs: {db_url: {}, greeting: {default: hi}}
outputs: {url: {}}
scripts: {deployment: echo planted}
"""


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    """A working folder that is no recipe root (no Git checkout, no slipstream.yaml)."""
    here = tmp_path / "shared"
    here.mkdir()
    before = Path.cwd()
    os.chdir(here)
    try:
        yield here
    finally:
        os.chdir(before)


def compile_webapp(home: Path, out: Path) -> tuple[Result, dict[str, object]]:
    env = {"SLIPSTREAM_HOME": str(home)}
    result = CliRunner().invoke(app, ["compile", "webapp", "--out", str(out)], env=env)
    root = out / "local" / "main.tf.json"
    doc = json.loads(root.read_text()) if root.exists() else {}
    return result, doc


def web_image(doc: dict[str, object]) -> str:
    resources = doc["resource"]["terraform_data"]  # type: ignore[index]
    return str(resources["web"]["input"]["image"])


def test_item_6_recipe_lookup_stays_in_the_current_folder(cwd: Path, tmp_path: Path) -> None:
    planted = cwd / "someone" / "else"
    planted.mkdir(parents=True)
    (planted / "webapp-web.yaml").write_text(PLANTED, encoding="utf-8")
    result, doc = compile_webapp(tmp_path / "home", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert web_image(doc) == "ubuntu-22.04"  # the shipped one, not the one below


def test_item_6_a_recipe_root_is_still_searched_whole(cwd: Path, tmp_path: Path) -> None:
    (cwd / ".git").mkdir()
    (cwd / "apps").mkdir()
    (cwd / "apps" / "webapp-web.yaml").write_text(PLANTED, encoding="utf-8")
    result, doc = compile_webapp(tmp_path / "home", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert web_image(doc) == "rocky-9"


@pytest.mark.parametrize(
    ("owner", "mode", "says"),
    [
        (65534, 0o644, "owned by uid 65534, not by you"),
        (None, 0o666, "anyone may write it (mode 0666)"),
    ],
)
def test_item_6_a_recipe_others_could_write_is_refused(
    cwd: Path, tmp_path: Path, owner: int | None, mode: int, says: str
) -> None:
    path = cwd / "webapp-web.yaml"
    path.write_text(PLANTED, encoding="utf-8")
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)
    result, doc = compile_webapp(tmp_path / "home", tmp_path / "out")
    assert result.exit_code == 1 and doc == {}
    assert result.stdout.startswith(f"webapp-web.yaml: {says}"), result.stdout
    assert "refused, as anyone who can write it decides what it deploys" in result.stdout


def test_item_6_the_run_says_where_each_recipe_came_from(cwd: Path, tmp_path: Path) -> None:
    (cwd / "webapp-web.yaml").write_text(PLANTED, encoding="utf-8")
    service = Service(tmp_path / "home", None)
    run_id = service.deploy(service.local_actor("tester"), "webapp", root=cwd, walk=False)
    said = {e.message for e in service.store.events(run_id) if e.kind == "recipe"}
    components = TEMPLATES_DIR.resolve() / "components"
    assert said == {
        f"`webapp` from {TEMPLATES_DIR.resolve() / 'deployments' / 'webapp.yaml'}",
        f"`webapp-web` from {cwd.resolve() / 'webapp-web.yaml'}",
        f"`webapp-db` from {components / 'webapp-db.yaml'}",
        f"`webapp-lb` from {components / 'webapp-lb.yaml'}",
        f"`ubuntu` from {components / 'ubuntu.yaml'}",  # webapp-lb's parent
        f"`debian` from {components / 'debian.yaml'}",  # webapp-db's parent
    }


def validate(path: Path, root: Path) -> Result:
    """``slipstream validate`` with a deadline: a FIFO used to hang it for ever."""
    found: list[Result] = []
    worker = threading.Thread(
        target=lambda: found.append(
            CliRunner().invoke(app, ["validate", str(path), "--root", str(root)])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert found, f"validate {path} did not return"
    return found[0]


def test_item_7_special_files_and_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    (root / ".git").mkdir(parents=True)
    (root / "app.yaml").write_text(
        "kind: deployment\nname: app\nnodes:\n  a: {component: zero}\n  b: {component: inside}\n"
    )
    (root / "zero.yaml").symlink_to("/dev/zero")  # read until memory ran out
    (root / "real").mkdir()
    (root / "real" / "base.yaml").write_text("kind: component\nname: inside\nimage: debian-12\n")
    (root / "inside.yaml").symlink_to(root / "real" / "base.yaml")
    os.mkfifo(root / "fifo.yaml")  # hung the read

    result = validate(root / "app.yaml", root)
    assert result.exit_code == 1
    assert result.stdout == "zero.yaml: a symlink to /dev/zero, outside the recipe root: refused\n"
    fifo = validate(root / "fifo.yaml", root)
    assert fifo.stdout == f"{root / 'fifo.yaml'}: not a regular file (a FIFO): refused\n"
    zero = validate(root / "zero.yaml", root)
    assert zero.stdout == (
        f"{root / 'zero.yaml'}: not a regular file (a character device): refused\n"
    )
