"""Helpers for end-to-end tests: the real CLI in a private service home, process checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def cli(
    home: Path,
    *args: str,
    timeout: float = 300,
    check: bool = False,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``slipstream ARGS`` as a real process with ``home`` as its service home
    (``env``: variables to add to this process's environment)."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester", **(env or {}))
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.app", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"slipstream {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def deploy_json(
    home: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    done = cli(home, "deploy", *args, "--json", timeout=timeout, env=env)
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"no JSON from deploy:\n{done.stdout}\n{done.stderr}") from exc
    return done.returncode, doc


def marked_processes(run_id: str) -> list[int]:
    """Processes started for ``run_id`` (they all carry its marker in their environment)."""
    marker = f"SLIPSTREAM_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if marker in environ and "State:\tZ" not in status:
            found.append(int(entry.name))
    return found


def outside_tmp() -> Path:
    """A new folder outside ``/tmp``, for what tests put where an instance could see it:
    isolated instances have a private ``/tmp``, so a check under ``/tmp`` would pass for
    the wrong reason. The caller removes it."""
    return Path(tempfile.mkdtemp(prefix="slipstream-test-", dir="/var/tmp"))


def fetch(url: str) -> tuple[str, str]:
    """(body, X-Served-By header) of a GET."""
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.read().decode(), response.headers.get("X-Served-By", "")


def agent_pids(run_id: str) -> dict[str, list[int]]:
    """Instance → pids of the agent daemons running for ``run_id`` (``python agent.py run``;
    not the bwrap processes holding an instance's namespace)."""
    found: dict[str, list[int]] = {}
    for pid in marked_processes(run_id):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[1:2] and cmdline[1].endswith(b"agent.py") and cmdline[2:3] == [b"run"]:
            instance = [e for e in environ if e.startswith(b"SLIPSTREAM_INSTANCE=")]
            found.setdefault(instance[0].decode().split("=", 1)[1], []).append(pid)
    return found
