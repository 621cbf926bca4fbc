"""What a command loads: ``--help`` and ``list`` start fast because they import nothing they
do not use (no recipe validator, compiler, Terraform helpers, migrations or HTTP server).

Each command runs as a real process under ``python -X importtime``, which names every module
the process imports; no timing is asserted (``bench/cli.py`` measures it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.service import Service
from engine.store.runstore import NewRun
from tests.e2e import REPO

# Never for --help or list. To forbid more, add a module (or package) name here or below.
HEAVY = ("jsonschema", "flask", "alembic", "engine.terraform", "engine.compile", "webhooks")
# `slipstream dashboard` is registered like any command: Voilà and the widgets never load.
HEAVY += ("ipywidgets", "IPython", "voila", "notebooks")
# Typer coerces arguments with pydantic; commands with flags only need not load it (app.py).
NOT_FOR_HELP = (*HEAVY, "pydantic", "sqlalchemy", "yaml", "engine.store", "engine.service")
# `list` opens the store, which imports SQLAlchemy until the store branch takes it off the
# normal path; then add "sqlalchemy" here.
NOT_FOR_LIST = (*HEAVY, "pydantic", "yaml", "engine.recipes", "engine.runs")
# The engine modules a bare start may load: the CLI and the stdlib-only base.
START_ALLOWED = ("engine", "engine.cli", "engine.canonical", "engine.errors")


def imported(home: Path, *args: str) -> set[str]:
    """Every module a fresh ``python -X importtime ARGS`` imported (it must exit 0)."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester")
    env.pop("SLIPSTREAM_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header


def cli_imports(home: Path, *args: str) -> set[str]:
    return imported(home, "-m", "engine.cli.app", *args)


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``names`` or inside one of them."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.fixture
def home_with_a_run(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    spec = json.dumps({"nodes": {}})
    Service(home, None).store.create_run(NewRun("r1", "webapp", "a", "always", 60, spec), [], {})
    return home


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    modules = imported(tmp_path, "-c", "import jsonschema")
    assert "jsonschema" in among(modules, HEAVY)
    assert among({"engine.compile.runspec", "engine.compiled", "yaml"}, HEAVY) == [
        "engine.compile.runspec"
    ]


def test_help_imports_typer_and_the_cli_only(tmp_path: Path) -> None:
    modules = cli_imports(tmp_path, "--help")
    assert "typer" in modules
    assert among(modules, NOT_FOR_HELP) == []
    engine = among(modules, ("engine",))
    assert [m for m in engine if m not in START_ALLOWED and not m.startswith("engine.cli.")] == []


def test_list_imports_no_recipe_compiler_terraform_migration_or_server(
    home_with_a_run: Path,
) -> None:
    modules = cli_imports(home_with_a_run, "list")
    assert "engine.store.runstore" in modules  # it did read the runs
    assert among(modules, NOT_FOR_LIST) == []


def test_list_without_a_home_opens_no_store_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    modules = cli_imports(home, "list")
    assert among(modules, (*NOT_FOR_LIST, "sqlalchemy", "engine.store")) == []
    assert not home.exists()


def test_the_interpreter_starts_without_an_import_hook_for_this_project(tmp_path: Path) -> None:
    # setuptools' editable finder cost every process ~20 ms; pyproject.toml's package-dir
    # makes the editable install a plain path entry instead.
    modules = imported(tmp_path, "-c", "pass")
    assert "site" in modules
    assert [m for m in modules if m.startswith("__editable__")] == []
