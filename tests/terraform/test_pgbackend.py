"""PgBackend.prepare against the machine's PostgreSQL (its advisory lock), with a stand-in
for Terraform that answers what Terraform's pg backend says when a workspace creation meets
the database-wide creation lock (real Terraform would need another process to hold that
lock, which would also stall every other Terraform using the test database)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.terraform import pgbackend
from engine.terraform.pgbackend import PgBackend, StateBackendError

BACKEND = PgBackend("postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "t_pg_tfstate")
LOCKED = (
    "Error: failed to lock state in Postgres: Already locked for workspace creation: "
    "r1-local\\nLock Info:\\n  Operation: init"
)


def fake_terraform(tmp_path: Path, locked_times: int, other_error: str = "") -> Path:
    """A ``terraform`` that records its calls; ``workspace new`` fails ``locked_times`` times
    with the creation-lock error (then with ``other_error`` if given), then succeeds."""
    script = tmp_path / "terraform"
    calls = tmp_path / "calls"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {calls}\n'
        '[ "$1" = workspace ] || exit 0\n'
        f"n=$(grep -c workspace {calls})\n"
        f'if [ "$n" -le {locked_times} ]; then printf "{LOCKED}\\n" >&2; exit 1; fi\n'
        + (f'echo "{other_error}" >&2; exit 1\n' if other_error else "exit 0\n"),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def workspace_calls(tmp_path: Path) -> int:
    return (tmp_path / "calls").read_text(encoding="utf-8").split().count("workspace")


def test_a_workspace_creation_meeting_the_creation_lock_is_tried_again(tmp_path: Path) -> None:
    script = fake_terraform(tmp_path, locked_times=2)
    BACKEND.prepare([str(script)], tmp_path, BACKEND.env("r1", "local"))
    assert workspace_calls(tmp_path) == 3


def test_another_error_is_not_retried_and_says_why(tmp_path: Path) -> None:
    script = fake_terraform(tmp_path, locked_times=0, other_error="Error: no space left")
    with pytest.raises(StateBackendError, match="no space left"):
        BACKEND.prepare([str(script)], tmp_path, BACKEND.env("r1", "local"))
    assert workspace_calls(tmp_path) == 1


def test_a_lock_held_too_long_ends_in_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgbackend, "CREATION_RETRY_S", 0.3)
    script = fake_terraform(tmp_path, locked_times=1000)
    with pytest.raises(StateBackendError, match="Already locked for workspace creation"):
        BACKEND.prepare([str(script)], tmp_path, BACKEND.env("r1", "local"))
    assert workspace_calls(tmp_path) >= 2
