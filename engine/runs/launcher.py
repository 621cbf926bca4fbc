"""The `local` cloud's launcher: starts and stops one instance, called by Terraform.

The compiled ``terraform_data`` resources run ``python -m engine.runs.launcher --home HOME
start|stop`` with the run, instance and sandbox in the environment (never a shell).

``start`` makes the sandbox (``work/``, and the instance's own ``home/`` and ``tmp/``,
its ``HOME`` and ``TMPDIR``), hands the agent its token and settings through a pipe (no
file in the sandbox ever holds the token), and starts it fully detached (new session,
streams redirected, so Terraform does not wait for it) in its own Linux namespaces
(:mod:`engine.runs.isolation`). Where bwrap is missing or not permitted the agent runs
as a plain process group, and one line says what is not isolated. ``start`` is
idempotent: an instance that runs is left alone, and whatever an interrupted start left
(a sandbox, processes) is cleared before starting afresh.

``stop`` ends the namespace (killing its PID 1 ends every process in it) or the process
group, then any process that escaped it (found by the markers every descendant inherits
unless it clears its environment), then removes the sandbox.

Example:
    $ SLIPSTREAM_RUN_ID=r1 SLIPSTREAM_INSTANCE=web.1 SLIPSTREAM_SANDBOX=/h/runs/r1/sb/web.1 \\
        python -m engine.runs.launcher --home /h start
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.agent import AGENT_FILE
from engine.runs import isolation

GRACE_S = 5.0
PASSED_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "SHELL"})
RECORD = "launcher.json"


def token_file(home: Path, run_id: str, instance: str) -> Path:
    """Where the engine leaves an instance's agent token for the launcher (mode 0600)."""
    return home / "runs" / run_id / "tokens" / instance


def server_file(run_dir: Path) -> Path:
    """The file holding the URL of the server serving this run's agents; only the process
    driving the run (holding its lock) writes it.

    It sits alone in its folder because isolated instances see that folder (bound, so a
    rewritten file shows) and nothing else of the run's.

    Example:
        >>> server_file(Path("/h/runs/r1")).as_posix()
        '/h/runs/r1/server/server.url'
    """
    return run_dir / "server" / "server.url"


@dataclass(frozen=True)
class Record:
    """What ``start`` left for ``stop``: the process to end, and whether it is the PID 1
    of the instance's namespace (else the leader of its process group)."""

    pid: int
    isolated: bool


def start(home: Path, run_id: str, instance: str, sandbox: Path, image: str = "") -> int:
    """Start the instance's agent unless it already runs; 0 when it runs. ``image``: a
    built `local` image the new sandbox starts from (:mod:`engine.runs.localimages`)."""
    home, sandbox = home.resolve(), sandbox.resolve()
    record = _read_record(sandbox)
    if record is not None and _ours(record.pid, run_id, instance):
        return 0  # already running: a resumed apply must not start a second agent
    if sandbox.exists():
        _clear(run_id, instance, sandbox, record)  # left by an interrupted start
    sandbox.mkdir(parents=True, mode=0o700)
    work, own_home, tmp = sandbox / "work", sandbox / "home", sandbox / "tmp"
    for folder in (work, own_home, tmp):
        folder.mkdir(mode=0o700)
    if image:
        from engine.runs import localimages

        localimages.restore(home, image, sandbox)
    shutil.copyfile(AGENT_FILE, sandbox / "agent.py")
    run_dir = home / "runs" / run_id
    url_file = server_file(run_dir)
    sockets = home / "sockets"
    for folder in (url_file.parent, sockets):  # bound into the namespace: must exist
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = url_file.read_text(encoding="utf-8").strip() if url_file.exists() else ""
    token = token_file(home, run_id, instance).read_text(encoding="utf-8").strip()
    settings = (
        f"SLIPSTREAM_SERVER={url}\n"
        f"SLIPSTREAM_SERVER_FILE={url_file}\n"
        f"SLIPSTREAM_RUN_ID={run_id}\n"
        f"SLIPSTREAM_INSTANCE={instance}\n"
        f"SLIPSTREAM_TOKEN={token}\n"
        f"SLIPSTREAM_WORKDIR={work}\n"
        "SLIPSTREAM_BIND_HOST=127.0.0.1\n"
    ).encode()
    # Only harmless basics: the service's own credentials (clouds, database) stay with it.
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
    # Markers every descendant inherits: stop finds escaped processes by them.
    env.update({"SLIPSTREAM_RUN_ID": run_id, "SLIPSTREAM_INSTANCE": instance})
    env.update({"HOME": str(own_home), "TMPDIR": str(tmp)})
    spec = isolation.Spec(
        sandbox=sandbox,
        hidden=(home, *isolation.user_homes()),
        readable=(sockets, url_file.parent, *isolation.python_folders()),
    )
    bwrap = isolation.bwrap_path()
    reason = isolation.missing_reason() if bwrap is None else ""
    if bwrap is not None:
        pid, reason = _start_isolated(bwrap, spec, settings, env, sandbox)
        if pid:
            _write_record(sandbox, Record(pid, isolated=True))
            return 0
    warning = f"slipstream launcher: {instance}: {isolation.not_isolated_warning(reason)}"
    print(warning, file=sys.stderr)
    with open(sandbox / "agent.out", "a", encoding="utf-8") as out:
        out.write(warning + "\n")
    pid = _start_plain(settings, env, sandbox)
    _write_record(sandbox, Record(pid, isolated=False))
    return 0


def _agent_argv(sandbox: Path, settings_fd: int) -> list[str]:
    # The agent reads its settings once from the pipe; its scripts never inherit it.
    env_file = f"/proc/self/fd/{settings_fd}"
    return [sys.executable, str(sandbox / "agent.py"), "run", "--env-file", env_file]


def _settings_pipe(settings: bytes) -> int:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, settings)  # far below a pipe's buffer: never blocks
    finally:
        os.close(write_fd)
    return read_fd


def _start_isolated(
    bwrap: str, spec: isolation.Spec, settings: bytes, env: dict[str, str], sandbox: Path
) -> tuple[int, str]:
    """(host PID of the namespace's PID 1, "") or (0, why it could not be made)."""
    settings_fd = _settings_pipe(settings)
    info_read, info_write = os.pipe()
    try:
        argv = spec.argv(bwrap, _agent_argv(sandbox, settings_fd), info_write)
        proc = _spawn(argv, sandbox, env, (settings_fd, info_write))
    except OSError as err:
        os.close(info_read)
        return 0, f"cannot run bwrap ({err.strerror or err})"
    finally:
        os.close(settings_fd)
        os.close(info_write)
    # bwrap writes this once the namespaces exist, then closes it; nothing: it failed.
    with os.fdopen(info_read, "rb") as info:
        data = info.read()
    try:
        return int(json.loads(data)["child-pid"]), ""
    except (ValueError, KeyError, TypeError):
        code = proc.wait(timeout=30)
        return 0, f"bwrap cannot make namespaces here (exit {code}, see agent.out)"


def _spawn(
    argv: list[str], sandbox: Path, env: dict[str, str], fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    """The agent's process (or bwrap holding it), in a session of its own, its output
    appended to ``agent.out``, given only the descriptors ``fds``."""
    with open(sandbox / "agent.out", "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=sandbox / "work",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=fds,
        )


def _start_plain(settings: bytes, env: dict[str, str], sandbox: Path) -> int:
    settings_fd = _settings_pipe(settings)
    try:
        proc = _spawn(_agent_argv(sandbox, settings_fd), sandbox, env, (settings_fd,))
    finally:
        os.close(settings_fd)
    return proc.pid


def stop(run_id: str, instance: str, sandbox: Path) -> int:
    """End every process of the instance and remove its sandbox; 0 (nothing left)."""
    sandbox = sandbox.resolve()
    _clear(run_id, instance, sandbox, _read_record(sandbox))
    return 0


def clear_leftovers(run_id: str, sandboxes: Path) -> list[str]:
    """Stop every instance whose sandbox is still under ``sandboxes`` (Terraform never ran
    their stop: an interrupted start taints the resource, and a tainted resource's
    destroy-time provisioner does not run); returns their names.

    Example:
        >>> clear_leftovers("r1", Path("/nonexistent/sandboxes"))
        []
    """
    if not sandboxes.is_dir():
        return []
    names = sorted(entry.name for entry in sandboxes.iterdir() if entry.is_dir())
    for name in names:
        stop(run_id, name, sandboxes / name)
    return names


def _clear(run_id: str, instance: str, sandbox: Path, record: Record | None) -> None:
    if record is not None and _ours(record.pid, run_id, instance):
        if record.isolated:
            _end_namespace(record.pid)
        else:
            _end_group(record.pid)
    for pid in _marked(run_id, instance):
        _signal(pid, signal.SIGKILL)
    shutil.rmtree(sandbox, ignore_errors=True)


def _read_record(sandbox: Path) -> Record | None:
    try:
        doc = json.loads((sandbox / RECORD).read_text(encoding="utf-8"))
        return Record(int(doc["pid"]), bool(doc["isolated"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(sandbox: Path, record: Record) -> None:
    temp = sandbox / f".{RECORD}.tmp"
    temp.write_text(json.dumps({"pid": record.pid, "isolated": record.isolated}), "utf-8")
    temp.replace(sandbox / RECORD)


def _end_namespace(init: int) -> None:
    """SIGTERM every process of the namespace, give them ``GRACE_S``, then SIGKILL its
    PID 1, which takes every process left in the namespace with it."""
    namespace = _pid_namespace(init)
    if namespace:
        for pid in _pids():
            if pid != init and _pid_namespace(pid) == namespace:
                _signal(pid, signal.SIGTERM)
    # PID 1 (bwrap's) leaves once its last child has: then everything is gone.
    if not _wait_gone(init, GRACE_S):
        _signal(init, signal.SIGKILL)
        _wait_gone(init, GRACE_S)


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


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _marked(run_id: str, instance: str) -> list[int]:
    """Processes carrying this instance's markers (for example after a `setsid`)."""
    wanted = {f"SLIPSTREAM_RUN_ID={run_id}".encode(), f"SLIPSTREAM_INSTANCE={instance}".encode()}
    return [pid for pid in _pids() if pid != os.getpid() and wanted <= _environ(pid)]


def _ours(pid: int, run_id: str, instance: str) -> bool:
    """Whether ``pid`` runs and is this instance's (a recorded PID may have been reused)."""
    wanted = {f"SLIPSTREAM_RUN_ID={run_id}".encode(), f"SLIPSTREAM_INSTANCE={instance}".encode()}
    return pid > 1 and _running(pid) and wanted <= _environ(pid)


def _environ(pid: int) -> set[bytes]:
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return set()


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text(errors="replace").rpartition(")")[2].split()
    except OSError:
        return False
    return bool(state) and state[0] not in ("Z", "X")


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
        return start(args.home, run_id, instance, sandbox, os.environ.get("SLIPSTREAM_IMAGE", ""))
    return stop(run_id, instance, sandbox)


if __name__ == "__main__":
    sys.exit(main())
