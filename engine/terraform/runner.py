"""Running Terraform: one class owns the process, its events, artifacts, timeout and cancel.

A ``TerraformRunner`` works in one root's folder. Each command leaves
``<step>.stdout.jsonl``, ``<step>.stderr.txt`` and ``<step>.status.json`` beside the root;
Terraform writes the first two itself and the runner follows the ``-json`` lines as they
come, passing them to ``on_event`` as ``TfEvent``s (from the calling thread). Terraform runs
in a session of its own with umask 077, so state and plan files are private to the service
user, and it outlives its runner: a runner killed mid-apply leaves Terraform to finish and
save its state, and the next runner of the root waits for it (``terraform.pid``, see
:mod:`engine.terraform.process`). Runners for different roots may run in parallel threads.

Example (not a doctest: it runs Terraform)::

    home = Path(".slipstream")
    runner = TerraformRunner(find_terraform(home), Path("runs/42/aws"),
                             terraform_env(home), on_event=print)
    runner.init()
    runner.plan({"agent_token": token}).changes   # {'add': 3, 'change': 0, 'remove': 0}
    runner.apply().applied                        # ['aws_instance.web', ...]
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from engine.errors import TerraformCancelled, TerraformError
from engine.files import write_atomic
from engine.terraform.args import (
    PLAN_FILE,
    VARS_FILE,
    apply_args,
    destroy_args,
    init_args,
    output_args,
    plan_args,
    state_rm_args,
    validate_args,
)
from engine.terraform.binary import TerraformExe, automation_env
from engine.terraform.events import (
    ApplyResult,
    InitResult,
    PlanResult,
    TfEvent,
    ValidateResult,
    changes_from,
    classify,
    outputs_document,
    parse_line,
    validate_document,
)
from engine.terraform.process import (
    FileTail,
    Leftover,
    PidFile,
    killpg,
    last_lines,
    leftover,
)

log = logging.getLogger(__name__)
EventSink = Callable[[TfEvent], None]
# Turns a whole-document stdout (output, validate) into its artifact text and its events.
Document = Callable[[str], tuple[str, list[TfEvent]]]
_POLL_S = 0.1


@dataclass(slots=True)
class _Outcome:
    step: str
    argv: list[str]
    duration_s: float
    events: list[TfEvent]
    document: str
    stdout: Path
    stderr: Path

    def base(self) -> dict[str, Any]:
        warnings = [e.diagnostic for e in self.events if e.diagnostic]
        return {
            "step": self.step,
            "argv": self.argv,
            "duration_s": self.duration_s,
            "warnings": [d for d in warnings if d.severity == "warning"],
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


class TerraformRunner:
    """Runs Terraform commands in ``workdir``, one at a time, with a timeout and a cancel.

    Example (not a doctest: it runs Terraform)::

        runner = TerraformRunner(exe, root, env, on_event=events.append)
        runner.init(); runner.plan({"size": "small"}); runner.apply()
        runner.output()   # {'web_ip': '10.0.0.7'}
    """

    def __init__(
        self,
        exe: TerraformExe,
        workdir: Path,
        env: Mapping[str, str],
        on_event: EventSink | None = None,
        timeout_s: float | None = 3600.0,
        grace_s: float = 300.0,
    ) -> None:
        self.exe = exe
        self.workdir = Path(workdir)
        self.env = automation_env(env)
        self.on_event = on_event
        self.timeout_s = timeout_s
        # After the one SIGINT, how long Terraform may take to stop before it is killed.
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        # The process group signals go to: our command's, or the leftover's we wait for.
        self._pgid: int | None = None
        self._interrupted_at: float | None = None
        self._cancelled = False

    @property
    def pid(self) -> int | None:
        """The running Terraform's process id (also its process group), else ``None``."""
        return self._pgid

    def init(self) -> InitResult:
        """``terraform init``: backend, modules and providers.

        Example:
                runner.init().duration_s
            0.41
        """
        out = self._run("init", init_args(json=_init_speaks_json(self.exe, self.env)))
        return InitResult(**out.base())

    def validate(self) -> ValidateResult:
        """``terraform validate``; raises ``ConfigInvalid`` with every error diagnostic.

        Example:
                runner.validate().warnings
            []
        """
        return ValidateResult(**self._run("validate", validate_args(), validate_document).base())

    def plan(
        self, variables: Mapping[str, object] | None = None, destroy: bool = False
    ) -> PlanResult:
        """``terraform plan`` into ``plan.bin``, which ``apply()`` then applies exactly.

        Example:
                runner.plan({"agent_token": token}).changes
            {'add': 3, 'change': 0, 'remove': 0}
        """
        self._write_vars(variables)
        out = self._run("plan", plan_args(PLAN_FILE, destroy=destroy, variables=variables))
        return _plan_result(out, self.workdir / PLAN_FILE)

    def apply(self) -> ApplyResult:
        """``terraform apply plan.bin``.

        Example:
                runner.apply().applied
            ['aws_instance.web']
        """
        return _apply_result(self._run("apply", apply_args(PLAN_FILE)))

    def destroy(self, variables: Mapping[str, object] | None = None) -> ApplyResult:
        """Plan a destroy into its own file and apply exactly that plan.

        Example:
                runner.destroy({"agent_token": token}).changes["remove"]
            3
        """
        plan, apply = destroy_args(variables)
        self._write_vars(variables)
        self._run("plan-destroy", plan)
        return _apply_result(self._run("destroy", apply))

    def state_rm(self, addresses: list[str]) -> None:
        """Forget ``addresses`` in the root's state; the resources stay where they are.

        Example:
                runner.state_rm(["aws_ami_from_instance.slipstream-web-ab12"])
        """
        self._run("state-rm", state_rm_args(addresses))

    def output(self) -> dict[str, Any]:
        """The root's outputs, values unwrapped (sensitive ones too; the artifact hides them).

        Example:
                runner.output()
            {'web_ip': '10.0.0.7'}
        """
        doc = json.loads(self._run("output", output_args(), outputs_document).document or "{}")
        return {name: entry.get("value") for name, entry in doc.items()}

    def cancel(self) -> bool:
        """Interrupt the running command with one SIGINT to its process group.

        The runner stays cancelled: later commands raise ``TerraformCancelled`` at once.
        Returns whether a signal was sent.

        Example:
                threading.Timer(60, runner.cancel).start()
        """
        with self._lock:
            self._cancelled = True
            return self._interrupt_locked()

    def leftover(self) -> Leftover | None:
        """A Terraform command still running in this root that another runner started (its
        process died, say SIGKILLed mid-apply: Terraform outlives it), else None.

        Example:
                runner.leftover()
            Leftover(pid=4242, start='81234', step='apply', stem='apply', driver=4200)
        """
        return leftover(self.workdir)

    def adopt(self, interrupt: bool = False) -> Leftover | None:
        """Wait for :meth:`leftover` to finish, passing on its events as they come (what it
        printed before is not repeated); ``interrupt``: send it one SIGINT first, as
        :meth:`cancel` would. Every command does this first; call it to interrupt.

        Example:
                runner.adopt(interrupt=True)   # the run is cancelled: stop its apply
        """
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("terraform: this runner is already running a command")
        try:
            return self._adopt(interrupt)
        finally:
            self._busy.release()

    def _adopt(self, interrupt: bool) -> Leftover | None:
        found = leftover(self.workdir)
        if found is None:
            PidFile(self.workdir).remove()
            return None
        out = _Outcome(found.step, [], 0.0, [], "", *_artifacts(self.workdir, found.stem))
        with self._lock:
            self._pgid, self._interrupted_at = found.pid, None
            if interrupt or self._cancelled:
                self._interrupt_locked()
        started = time.monotonic()
        try:
            self._watch(found.running, FileTail.from_end(out.stdout), out)
        finally:
            with self._lock:
                self._pgid, self._interrupted_at = None, None
        status = self.workdir / f"{found.stem}.status.json"
        if not status.exists():  # its driver died before it could say how it ended
            errors = [
                str(e.diagnostic)
                for e in map(parse_line, FileTail(out.stdout).lines(final=True))
                if e is not None and e.diagnostic and e.diagnostic.severity == "error"
            ]
            doc: dict[str, Any] = {"step": found.step, "argv": None, "returncode": None}
            doc |= {"adopted_by": os.getpid(), "waited_s": round(time.monotonic() - started, 3)}
            doc["error"] = f"terraform {found.step}: {errors[0]}" if errors else None
            write_atomic(status, json.dumps(doc, indent=2) + "\n")
        PidFile(self.workdir).remove()
        return found

    def _interrupt_locked(self) -> bool:
        pgid = self._pgid
        if pgid is None or self._interrupted_at is not None:
            return False
        if not killpg(pgid, signal.SIGINT):
            return False
        self._interrupted_at = time.monotonic()
        return True

    def _write_vars(self, variables: Mapping[str, object] | None) -> None:
        if variables:
            text = json.dumps(dict(variables), indent=2, sort_keys=True) + "\n"
            write_atomic(self.workdir / VARS_FILE, text, mode=0o600)

    def _run(self, step: str, args: list[str], document: Document | None = None) -> _Outcome:
        if self._cancelled:
            raise TerraformCancelled(step, "cancelled before it started")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"terraform {step}: this runner is already running a command")
        try:
            self._adopt(interrupt=False)
            return self._run_one(step, args, document)
        finally:
            self._busy.release()

    def _run_one(self, step: str, args: list[str], document: Document | None) -> _Outcome:
        stem = _free_stem(self.workdir, step)
        out = _Outcome(step, args, 0.0, [], "", *_artifacts(self.workdir, stem))
        started = time.monotonic()
        timed_out, caller_gone = False, None
        # A document (output, validate) can only be parsed, and redacted, whole: it goes to
        # a file with no name, so its raw text (sensitive outputs) never lies on disk.
        with (
            _private(out.stderr) as err_f,
            tempfile.TemporaryFile(dir=self.workdir) if document else _private(out.stdout) as out_f,
        ):
            proc = self._start(step, args, out_f, err_f)
            pid_file = PidFile(self.workdir)
            pid_file.write(proc.pid, step, stem)
            tail = None if document else FileTail(out.stdout)
            try:
                timed_out = self._watch(lambda: proc.poll() is None, tail, out)
            except BaseException as exc:
                caller_gone = exc
                self._stop(proc, tail, out)
            finally:
                with self._lock:
                    interrupted, self._interrupted_at, self._pgid = self._interrupted_at, None, None
                if proc.poll() is not None:
                    pid_file.remove()
            if document:
                out_f.seek(0)
                out.document = out_f.read().decode("utf-8", "replace")
                artifact, events = document(out.document)
                write_atomic(out.stdout, artifact, mode=0o600)
                for event in events:
                    self._emit(out, replace(event, step=step))
        out.duration_s = round(time.monotonic() - started, 3)
        error = None
        if proc.returncode != 0 and caller_gone is None:
            diagnostics = [e.diagnostic for e in out.events if e.diagnostic]
            error = classify(
                step,
                diagnostics,
                last_lines(out.stderr),
                returncode=proc.returncode,
                cancelled=interrupted is not None and not timed_out,
                timed_out=timed_out,
            )
        reason = f"terraform {step}: caller interrupted" if caller_gone else error
        status = {"step": step, "argv": args, "returncode": proc.returncode}
        status |= {"duration_s": out.duration_s, "error": str(reason) if reason else None}
        write_atomic(self.workdir / f"{stem}.status.json", json.dumps(status, indent=2) + "\n")
        if caller_gone:
            raise caller_gone
        if error:
            raise error
        return out

    def _start(
        self, step: str, args: list[str], out_f: IO[bytes], err_f: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._cancelled:
                raise TerraformCancelled(step, "cancelled before it started")
            try:
                # Its own session: our Ctrl-C or death is not its; files, not pipes: it
                # never dies writing to a reader that is gone, and always saves its state.
                proc = subprocess.Popen(
                    [*self.exe.argv, *args],
                    cwd=self.workdir,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                    start_new_session=True,
                    umask=0o077,
                )
            except OSError as exc:
                raise TerraformError(step, f"cannot start {self.exe.argv[0]}: {exc}") from exc
            self._pgid = proc.pid
            return proc

    def _watch(self, running: Callable[[], bool], tail: FileTail | None, out: _Outcome) -> bool:
        """Follow a command until it ends, passing on its events; returns whether the
        timeout interrupted it."""
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        timed_out = False
        try:
            while running():
                self._follow(tail, out)
                time.sleep(_POLL_S)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    deadline = None
                    with self._lock:
                        timed_out = self._interrupt_locked()
                since, pgid = self._interrupted_at, self._pgid
                if since is not None and pgid is not None and now - since >= self.grace_s:
                    # Terraform ignored its interrupt; the state may be lost, but it must stop.
                    killpg(pgid)
        finally:
            self._follow(tail, out, final=True)
        return timed_out

    def _follow(self, tail: FileTail | None, out: _Outcome, final: bool = False) -> None:
        if tail is None:
            return
        for line in tail.lines(final):
            event = parse_line(line)
            if event is not None:
                self._emit(out, replace(event, step=out.step))

    def _stop(self, proc: subprocess.Popen[bytes], tail: FileTail | None, out: _Outcome) -> None:
        """Our caller is going away (say Ctrl-C in the CLI, which Terraform's own session
        does not receive): interrupt Terraform, and kill it if we are interrupted again."""
        self.cancel()
        try:
            self._watch(lambda: proc.poll() is None, tail, out)
        finally:
            if proc.poll() is None:
                killpg(proc.pid)
                proc.wait()

    def _emit(self, out: _Outcome, event: TfEvent) -> None:
        out.events.append(event)
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            # A broken listener must not stop Terraform half way through an apply.
            log.exception("on_event failed for a %s event of terraform %s", event.type, out.step)


def _private(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return open(fd, "wb")


def _free_stem(workdir: Path, step: str) -> str:
    stem, n = step, 1
    while (workdir / f"{stem}.stdout.jsonl").exists():
        n += 1
        stem = f"{step}-{n}"
    return stem


def _artifacts(workdir: Path, stem: str) -> tuple[Path, Path]:
    return workdir / f"{stem}.stdout.jsonl", workdir / f"{stem}.stderr.txt"


def _plan_result(out: _Outcome, plan_file: Path) -> PlanResult:
    planned = [
        (e.resource, e.action or "")
        for e in out.events
        if e.type == "planned_change" and e.resource
    ]
    return PlanResult(
        **out.base(),
        plan_file=plan_file,
        changes=changes_from(out.events),
        resource_changes=planned,
    )


def _apply_result(out: _Outcome) -> ApplyResult:
    applied = [e.resource for e in out.events if e.type == "apply_complete" and e.resource]
    return ApplyResult(**out.base(), changes=changes_from(out.events), applied=applied)


_INIT_JSON: dict[tuple[str, ...], bool] = {}


def _init_speaks_json(exe: TerraformExe, env: Mapping[str, str]) -> bool:
    """Whether this Terraform's ``init`` takes ``-json`` (1.9 and later), asked once."""
    key = tuple(exe.argv)
    if key not in _INIT_JSON:
        try:
            done = subprocess.run(
                [*exe.argv, "init", "-help"],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            _INIT_JSON[key] = "-json" in done.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
    return _INIT_JSON[key]
