"""The `local` cloud's launcher: starts and stops one instance, called by Terraform.

The compiled ``terraform_data`` resources run ``python -m engine.runs.launcher --home HOME
start|stop`` with the run, instance and sandbox in the environment (never a shell).
``start`` makes the sandbox, hands the agent its token and settings, and starts it fully
detached (new session, streams redirected, so Terraform does not wait for it). ``stop``
ends the instance's whole process group, then any process that escaped it, then removes
the sandbox.

Example:
    $ SLIPSTREAM_RUN_ID=r1 SLIPSTREAM_INSTANCE=web.1 SLIPSTREAM_SANDBOX=/h/runs/r1/sb/web.1 \\
        python -m engine.runs.launcher --home /h start
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.agent import AGENT_FILE

GRACE_S = 5.0
PASSED_ENV = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR"}
)


def token_file(home: Path, run_id: str, instance: str) -> Path:
    """Where the engine leaves an instance's agent token for the launcher (mode 0600)."""
    return home / "runs" / run_id / "tokens" / instance


def server_file(run_dir: Path) -> Path:
    """The file holding the URL of the server serving this run's agents; only the process
    driving the run (holding its lock) writes it."""
    return run_dir / "server.url"


def start(home: Path, run_id: str, instance: str, sandbox: Path) -> int:
    sandbox.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = sandbox / "work"
    work.mkdir(exist_ok=True)
    pidfile = sandbox / "launcher.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text() or 0)):
        return 0  # already running: a resumed apply must not start a second agent
    shutil.copyfile(AGENT_FILE, sandbox / "agent.py")
    token = token_file(home, run_id, instance).read_text(encoding="utf-8").strip()
    url_file = server_file(home / "runs" / run_id)
    url = url_file.read_text(encoding="utf-8").strip() if url_file.exists() else ""
    env_file = sandbox / "agent.env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(
            f"SLIPSTREAM_SERVER={url}\n"
            f"SLIPSTREAM_SERVER_FILE={url_file.resolve()}\n"
            f"SLIPSTREAM_RUN_ID={run_id}\n"
            f"SLIPSTREAM_INSTANCE={instance}\n"
            f"SLIPSTREAM_TOKEN={token}\n"
            f"SLIPSTREAM_WORKDIR={work.resolve()}\n"
            "SLIPSTREAM_BIND_HOST=127.0.0.1\n"
        )
    # Only harmless basics: the service's own credentials (clouds, database) stay with it.
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
    # Markers every descendant inherits: stop finds escaped processes by them.
    env.update({"SLIPSTREAM_RUN_ID": run_id, "SLIPSTREAM_INSTANCE": instance})
    with open(sandbox / "agent.out", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(sandbox / "agent.py"), "run", "--env-file", str(env_file)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    pidfile.write_text(str(proc.pid), encoding="utf-8")
    return 0


def stop(run_id: str, instance: str, sandbox: Path) -> int:
    pidfile = sandbox / "launcher.pid"
    if pidfile.exists():
        pgid = int(pidfile.read_text(encoding="utf-8") or 0)
        if pgid > 1:
            _end_group(pgid)
    for pid in _marked(run_id, instance):
        _signal(pid, signal.SIGKILL)
    shutil.rmtree(sandbox, ignore_errors=True)
    return 0


def _end_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _marked(run_id: str, instance: str) -> list[int]:
    """Processes carrying this instance's markers (for example after a `setsid`)."""
    wanted = {f"SLIPSTREAM_RUN_ID={run_id}".encode(), f"SLIPSTREAM_INSTANCE={instance}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    if pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runs.launcher")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    run_id = os.environ["SLIPSTREAM_RUN_ID"]
    instance = os.environ["SLIPSTREAM_INSTANCE"]
    sandbox = Path(os.environ["SLIPSTREAM_SANDBOX"])
    if args.action == "start":
        return start(args.home, run_id, instance, sandbox)
    return stop(run_id, instance, sandbox)


if __name__ == "__main__":
    sys.exit(main())
