"""What a damaged store, an unsafe or read-only home, a bad Terraform and a full disk do
(issue 16, items 4, 8 and 13): a clear message, never a traceback, and a way out.

Real CLI processes; the read-only home and the full disk are real mounts (a read-only bind
mount, a small tmpfs) in a mount namespace of the command's own (``unshare``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.e2e import REPO, cli, marked_processes


def write_recipes(root: Path) -> Path:
    (root / ".git").mkdir(parents=True, exist_ok=True)
    (root / "pair.yaml").write_text(
        "kind: deployment\nname: pair\nkeep_running: always\n"
        "nodes:\n  n: {component: ubuntu, multiplicity: 2}\n",
        encoding="utf-8",
    )
    return root / "pair.yaml"


def clear_failure(done: subprocess.CompletedProcess[str], command: str, *says: str) -> None:
    """Exit 1, no traceback, and a message from ``command`` saying each of ``says``."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"{command}: "), done.stderr
    for text in says:
        assert text in done.stderr, done.stderr


def namespaced(home: Path, mount: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``slipstream ARGS`` in a mount namespace of its own, after ``mount`` (a shell line
    that may use "$H", the home) ran there."""
    env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_USER="tester", H=str(home))
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    return subprocess.run(
        [
            "unshare",
            "--mount",
            *userns,
            "sh",
            "-c",
            f'{mount} && exec "$0" -m engine.cli.app "$@"',
            sys.executable,
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_item_4_a_damaged_store_says_so_and_destroy_from_state_works(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = cli(home, "deploy", str(write_recipes(tmp_path / "recipes")), "--json", check=True)
    run_id = json.loads(done.stdout)["id"]
    assert marked_processes(run_id)
    with sqlite3.connect(home / "runs.db") as db:
        db.execute("DROP TABLE events")
    hint = "slipstream destroy --from-state RUN"
    for command in ("status", "destroy"):
        clear_failure(cli(home, command, run_id), command, "missing table(s) `events`", hint)

    done = cli(home, "destroy", "--from-state", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "destroyed": True,
        "id": run_id,
        "steps": ["local: destroyed 2 resource(s)"],
    }
    assert marked_processes(run_id) == []
    run_dir = home / "runs" / run_id
    state = json.loads((run_dir / "tf" / "local" / "terraform.tfstate").read_text())
    assert state["resources"] == []
    assert not (run_dir / "sandboxes").exists() and not (run_dir / "tokens").exists()
    again = cli(home, "destroy", "--from-state", run_id)
    assert again.returncode == 0 and "local: nothing in its state" in again.stdout
    clear_failure(cli(home, "destroy", "--from-state", "../x"), "destroy", "not a run id")


def test_item_13_a_garbage_store_is_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "runs.db").write_bytes(b"\x00garbage, not SQLite\n" * 500)
    for command in (["list"], ["status", "r1"], ["destroy", "r1"]):
        clear_failure(
            cli(home, *command),
            command[0],
            "cannot be opened: file is not a database",
            "slipstream destroy --from-state RUN",
        )


def test_item_13_a_read_only_home_is_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cli(home, "list", check=True)  # a home with its store, then mounted read-only
    assert (home / "runs.db").exists()
    read_only = 'mount --bind "$H" "$H" && mount -o remount,bind,ro "$H"'
    for command in (["list"], ["deploy", "webapp"]):
        done = namespaced(home, read_only, *command)
        clear_failure(done, command[0], f"the service home {home} is not writable")


def test_item_13_a_bad_slipstream_terraform_is_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    recipe = str(write_recipes(tmp_path / "recipes"))
    for bad, says in (
        ("/nonexistent/terraform", "no such executable"),
        ("/bin/ls", "not Terraform or OpenTofu"),
    ):
        env = dict(os.environ, SLIPSTREAM_HOME=str(home), SLIPSTREAM_TERRAFORM=bad)
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli.app", "deploy", recipe],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        clear_failure(done, "deploy", f"SLIPSTREAM_TERRAFORM={bad}: {says}")
    assert json.loads(cli(home, "list", "--json").stdout) == []  # no run was created


FILLER = """\
kind: component
name: filler
image: ubuntu-22.04
outputs:
  note: {}
scripts:
  deployment: |
    dd if=/dev/zero of=fill bs=64k 2>/dev/null || true
    ss-set note "written once the disk had room again" &
    sleep 4
    rm -f fill
    wait
"""


def test_item_13_a_full_disk_during_executing_is_503_and_a_readable_line(
    tmp_path: Path,
) -> None:
    """The home is a 48 MiB tmpfs; a script fills it while the run is Executing: the
    store cannot write, agents are answered 503 and retry, the deploy says why on one
    line, and the run goes on once there is room again."""
    recipes = tmp_path / "recipes"
    (recipes / ".git").mkdir(parents=True)
    (recipes / "filler.yaml").write_text(FILLER, encoding="utf-8")
    (recipes / "full.yaml").write_text(
        "kind: deployment\nname: full\nkeep_running: never\nnodes:\n  f: {component: filler}\n",
        encoding="utf-8",
    )
    home = tmp_path / "home"
    home.mkdir()
    done = namespaced(
        home,
        'mount -t tmpfs -o size=48m,mode=0700 tmpfs "$H"',
        "deploy",
        str(recipes / "full.yaml"),
        "--json",
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["state"] == "Done"
    assert doc["params"]["f.1:note"] == "written once the disk had room again"
    said = [line for line in done.stderr.splitlines() if "disk is full" in line]
    assert said and said[0] == (
        f"slipstream: the run store {home}/runs.db cannot write: database or disk is full; "
        "agents' requests are answered 503 and retried"
    ), done.stderr


def test_item_8_everything_in_a_home_is_private_even_one_made_before(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    recipes = tmp_path / "recipes"
    (recipes / ".git").mkdir(parents=True)
    (recipes / "once.yaml").write_text(
        "kind: deployment\nname: once\nkeep_running: never\n"
        "inputs: {pw: {default: s3cret-value}}\n"
        "nodes:\n  n: {component: ubuntu}\n",
        encoding="utf-8",
    )
    done = cli(home, "deploy", str(recipes / "once.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    assert "the service home" in done.stderr and "made private" in done.stderr
    shared = [
        f"{path.relative_to(home)} {stat.S_IMODE(path.lstat().st_mode):04o}"
        for path in [home, *home.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]
    assert shared == []
    assert {p.name for p in home.glob("runs.db*")} >= {"runs.db", "runs.db-wal"}


def test_item_8_a_home_of_another_user_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cli(home, "list", check=True)
    (home / "clouds.yaml").write_text("clouds: {}\n", encoding="utf-8")
    os.chown(home / "clouds.yaml", 65534, 65534)  # planted by someone else
    clear_failure(
        cli(home, "list"), "list", "clouds.yaml in the service home", "belongs to uid 65534"
    )
    os.chown(home / "clouds.yaml", os.geteuid(), os.getegid())
    os.chmod(home, 0o777)
    done = cli(home, "list")
    assert done.returncode == 0
    assert "was readable or writable by others (mode 0777): made private" in done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    os.chown(home, 65534, 65534)
    clear_failure(cli(home, "list"), "list", "belongs to uid 65534, not to you")
