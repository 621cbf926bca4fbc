"""TerraformRunner with the real Terraform, on roots of ``terraform_data`` resources and
``local-exec`` provisioners (no provider to download); argv builders, the event parser and
the error classifier as pure functions."""

from __future__ import annotations

import _thread
import json
import logging
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import (
    ConfigInvalid,
    Diagnostic,
    ProviderUnavailable,
    StateLocked,
    TerraformCancelled,
    TerraformError,
    TerraformTimeout,
)
from engine.terraform.args import (
    VARS_FILE,
    apply_args,
    destroy_args,
    init_args,
    output_args,
    plan_args,
    validate_args,
)
from engine.terraform.binary import TerraformExe, terraform_env
from engine.terraform.events import TfEvent, classify, parse_line
from engine.terraform.runner import TerraformRunner
from tests.conftest import REPO

SECRET = "agent-token-7f3c9e1d"
PLAN = ["plan", "-input=false", "-no-color", "-json"]
APPLY = ["apply", "-input=false", "-no-color", "-json"]

ROUND_TRIP = """
variable "greeting" { type = string }
resource "terraform_data" "a" {
  input = var.greeting
  provisioner "local-exec" { command = "echo created a" }
}
resource "terraform_data" "b" {
  input = "b"
  provisioner "local-exec" { command = "echo created b" }
}
output "a" { value = terraform_data.a.output }
output "both" { value = [terraform_data.a.output, terraform_data.b.output] }
"""
WITH_SECRET = """
variable "agent_token" {
  type      = string
  sensitive = true
}
resource "terraform_data" "agent" {
  input = var.agent_token
  provisioner "local-exec" {
    command     = "test -n \\"$TOKEN\\" && echo token received"
    environment = { TOKEN = var.agent_token }
  }
}
output "token" {
  value     = var.agent_token
  sensitive = true
}
"""
FAILING = """
resource "terraform_data" "bad" {
  provisioner "local-exec" { command = "echo oops >&2; exit 3" }
}
"""
SLOW = """
resource "terraform_data" "slow" {
  provisioner "local-exec" { command = "sleep 30" }
}
"""


@pytest.fixture
def env(tf_home: Path) -> dict[str, str]:
    return terraform_env(tf_home)


def root(path: Path, hcl: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "main.tf").write_text(hcl, encoding="utf-8")
    return path


def runner_for(
    exe: TerraformExe, env: dict[str, str], workdir: Path, **kw: Any
) -> tuple[TerraformRunner, list[TfEvent]]:
    events: list[TfEvent] = []
    return TerraformRunner(exe, workdir, env, on_event=events.append, **kw), events


# -- argv builders: exact equality ------------------------------------------------------


@pytest.mark.parametrize(
    ("got", "want"),
    [
        (init_args(), ["init", "-input=false", "-no-color", "-json"]),
        (init_args(json=False), ["init", "-input=false", "-no-color"]),
        (plan_args(), [*PLAN, "-out=plan.bin"]),
        (plan_args(variables={"t": SECRET}), [*PLAN, "-out=plan.bin", f"-var-file={VARS_FILE}"]),
        (plan_args(variables={}), [*PLAN, "-out=plan.bin"]),
        (
            plan_args(out="x.bin", destroy=True, var_file="site.tfvars.json"),
            [*PLAN, "-out=x.bin", "-destroy", "-var-file=site.tfvars.json"],
        ),
        (apply_args(), [*APPLY, "plan.bin"]),
        (apply_args("other.bin"), [*APPLY, "other.bin"]),
        (output_args(), ["output", "-no-color", "-json"]),
        (validate_args(), ["validate", "-no-color", "-json"]),
        (
            destroy_args({"t": SECRET}),
            [
                [*PLAN, "-out=destroy.bin", "-destroy", f"-var-file={VARS_FILE}"],
                [*APPLY, "destroy.bin"],
            ],
        ),
        (destroy_args(), [[*PLAN, "-out=destroy.bin", "-destroy"], [*APPLY, "destroy.bin"]]),
    ],
)
def test_argv_builders(got: list[str], want: list[str]) -> None:
    assert got == want


# -- parsing and classifying: pure ---------------------------------------------------------


def test_unknown_event_types_are_kept_not_fatal() -> None:
    line = json.dumps({"type": "quantum_drift", "@level": "warn", "@message": "hm", "n": [1]})
    event = parse_line(line)
    assert event is not None
    assert (event.type, event.level, event.message, event.known) == (
        "quantum_drift",
        "warn",
        "hm",
        False,
    )
    assert event.raw["n"] == [1]
    assert parse_line('{"@message": "no type at all"}') == TfEvent(
        type="unknown", message="no type at all", raw={"@message": "no type at all"}
    )
    assert parse_line('{"hook": "not an object", "type": "apply_start"}') is not None


@pytest.mark.parametrize("line", ["panic: runtime error", "[1, 2]", '"a string"', "{broken"])
def test_non_object_lines_are_plain_messages(line: str) -> None:
    assert parse_line(line) == TfEvent(type="text", message=line)


def test_resource_events_carry_address_action_elapsed() -> None:
    hook = {"resource": {"addr": "terraform_data.a"}, "action": "create", "elapsed_seconds": 4}
    event = parse_line(json.dumps({"type": "apply_complete", "hook": hook}))
    assert event is not None and event.known
    assert (event.resource, event.action, event.elapsed_s) == ("terraform_data.a", "create", 4.0)


@pytest.mark.parametrize(
    ("step", "summary", "kind"),
    [
        ("apply", "Error acquiring the state lock", StateLocked),
        ("init", "Failed to query available provider packages", ProviderUnavailable),
        ("init", "Failed to install provider", ProviderUnavailable),
        ("init", "Incompatible provider version", ProviderUnavailable),
        ("plan", "Unsupported argument", ConfigInvalid),
        ("plan", "No value for required variable", ConfigInvalid),
        ("validate", "Something new in Terraform 2.0", ConfigInvalid),
        ("apply", "Invalid instance type", TerraformError),  # a cloud API said so
        ("apply", "local-exec provisioner error", TerraformError),
    ],
)
def test_classifier(step: str, summary: str, kind: type[TerraformError]) -> None:
    err = classify(step, [Diagnostic("error", summary, "because\nmore")], returncode=1)
    assert type(err) is kind
    assert str(err) == f"terraform {step}: {summary}: because"


def test_classifier_skips_wrappers_and_falls_back_to_stderr() -> None:
    wrapper = Diagnostic("error", "Terraform encountered problems during initialisation, …")
    cause = Diagnostic("error", "Unclosed configuration block", filename="main.tf", line=1)
    err = classify("init", [Diagnostic("warning", "old"), cause, wrapper])
    assert type(err) is ConfigInvalid and err.diagnostics == [cause, wrapper]
    assert str(err) == "terraform init: main.tf:1: Unclosed configuration block"
    err = classify("plan", [], "noise\nError: flag provided but not defined\n\n", returncode=1)
    assert str(err) == "terraform plan: Error: flag provided but not defined"
    assert str(classify("plan", [], "", returncode=2)) == "terraform plan: exit status 2"
    assert type(classify("apply", [cause], cancelled=True)) is TerraformCancelled
    assert type(classify("apply", [cause], timed_out=True)) is TerraformTimeout


# -- the real Terraform --------------------------------------------------------------------


def test_round_trip(terraform: TerraformExe, env: dict[str, str], tmp_path: Path) -> None:
    runner, events = runner_for(terraform, env, root(tmp_path, ROUND_TRIP))
    assert runner.init().step == "init"
    assert runner.validate().warnings == []

    plan = runner.plan({"greeting": "hi"})
    assert plan.changes == {"add": 2, "change": 0, "remove": 0} and plan.has_changes
    assert sorted(plan.resource_changes) == [
        ("terraform_data.a", "create"),
        ("terraform_data.b", "create"),
    ]
    assert plan.plan_file == tmp_path / "plan.bin" and plan.plan_file.exists()

    applied = runner.apply()
    assert sorted(applied.applied) == ["terraform_data.a", "terraform_data.b"]
    assert applied.changes == {"add": 2, "change": 0, "remove": 0}
    done = [e for e in events if e.type == "apply_complete"]
    assert sorted((e.step, e.resource, e.action) for e in done) == [
        ("apply", "terraform_data.a", "create"),
        ("apply", "terraform_data.b", "create"),
    ]
    assert all(e.elapsed_s is not None for e in done)
    said = [e.raw["hook"]["output"] for e in events if e.type == "provision_progress"]
    assert {"created a", "created b"} <= set(said)

    assert runner.output() == {"a": "hi", "both": ["hi", "b"]}
    gone = runner.destroy({"greeting": "hi"})
    assert gone.changes == {"add": 0, "change": 0, "remove": 2}
    assert runner.output() == {}

    summaries = [
        (e.step, e.raw["changes"]["operation"]) for e in events if e.type == "change_summary"
    ]
    assert summaries == [
        ("plan", "plan"),
        ("apply", "apply"),
        ("plan-destroy", "plan"),
        ("destroy", "apply"),
    ]
    for stem in (
        "init",
        "validate",
        "plan",
        "apply",
        "output",
        "plan-destroy",
        "destroy",
        "output-2",
    ):
        assert (tmp_path / f"{stem}.stdout.jsonl").exists(), stem
        assert (tmp_path / f"{stem}.stderr.txt").exists(), stem
        status = json.loads((tmp_path / f"{stem}.status.json").read_text())
        assert status["returncode"] == 0 and status["error"] is None, stem
    lines = (tmp_path / "apply.stdout.jsonl").read_text().splitlines()
    assert [json.loads(ln)["type"] for ln in lines].count("apply_complete") == 2
    assert runner.pid is None


def test_secret_stays_out_of_argv_and_artifacts(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path
) -> None:
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "terraform-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(argv_log))}\n'
        f'exec {shlex.join(terraform.argv)} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    work = root(tmp_path / "root", WITH_SECRET)
    runner, events = runner_for(TerraformExe([str(wrapper)], "test"), env, work)

    runner.init()
    runner.plan({"agent_token": SECRET})
    runner.apply()
    assert runner.output() == {"token": SECRET}
    runner.destroy({"agent_token": SECRET})

    argv = argv_log.read_text()
    assert "plan -input=false" in argv and SECRET not in argv
    assert not [e for e in events if SECRET in json.dumps(e.raw) or SECRET in e.message]
    assert any("token received" in e.message or "suppressed" in e.message for e in events)
    holders = {p.name for p in work.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()}
    assert holders <= {VARS_FILE, "terraform.tfstate", "terraform.tfstate.backup"}
    assert VARS_FILE in holders
    assert "(sensitive)" in (work / "output.stdout.jsonl").read_text()
    for name in (VARS_FILE, "plan.bin", "destroy.bin", "terraform.tfstate"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o600, name


def test_failing_provisioner_raises_with_diagnostic(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path
) -> None:
    runner, events = runner_for(terraform, env, root(tmp_path, FAILING))
    runner.init()
    runner.plan()
    with pytest.raises(TerraformError) as caught:
        runner.apply()
    err = caught.value
    assert type(err) is TerraformError and err.step == "apply"
    assert str(err).startswith(
        "terraform apply: terraform_data.bad: local-exec provisioner error: "
        "Error running command 'echo oops >&2; exit 3': exit status 3."
    )
    assert [d.summary for d in err.diagnostics] == ["local-exec provisioner error"]
    assert "oops" in err.diagnostics[0].detail
    assert [e.resource for e in events if e.type == "apply_errored"] == ["terraform_data.bad"]
    status = json.loads((tmp_path / "apply.status.json").read_text())
    assert status["returncode"] == 1 and status["error"] == str(err)


def test_invalid_config(terraform: TerraformExe, env: dict[str, str], tmp_path: Path) -> None:
    hcl = 'resource "terraform_data" "x" {\n  input = var.nope\n}\n'
    runner, events = runner_for(terraform, env, root(tmp_path / "ref", hcl))
    runner.init()
    with pytest.raises(
        ConfigInvalid,
        match=r"^terraform validate: main.tf:2: Reference to undeclared input variable",
    ):
        runner.validate()
    assert [e.diagnostic.summary for e in events if e.diagnostic] == [
        "Reference to undeclared input variable"
    ]
    with pytest.raises(ConfigInvalid, match=r"^terraform plan: main.tf:2: Reference to undeclared"):
        runner.plan()

    broken, _ = runner_for(terraform, env, root(tmp_path / "syntax", 'resource "x" "y" {\n'))
    with pytest.raises(
        ConfigInvalid, match=r"^terraform init: main.tf:1: Unclosed configuration block"
    ):
        broken.init()


def test_unreachable_provider(terraform: TerraformExe, env: dict[str, str], tmp_path: Path) -> None:
    source = "example.invalid/acme/x"  # .invalid never resolves, online or not
    hcl = f'terraform {{\n  required_providers {{\n    x = {{ source = "{source}" }}\n  }}\n}}\n'
    runner, _ = runner_for(terraform, env, root(tmp_path, hcl), timeout_s=60)
    with pytest.raises(ProviderUnavailable, match="Failed to query available provider packages"):
        runner.init()


def test_cancel_interrupts_once_and_leaves_no_process(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path
) -> None:
    started = threading.Event()
    work = root(tmp_path, SLOW)

    def on_event(event: TfEvent) -> None:
        if event.type == "provision_start":
            started.set()

    runner = TerraformRunner(terraform, work, env, on_event=on_event, timeout_s=120)
    runner.init()
    runner.plan()
    outcome: dict[str, BaseException] = {}
    thread = threading.Thread(target=lambda: _catch(runner.apply, outcome))
    thread.start()
    assert started.wait(30)
    pid = runner.pid
    assert pid is not None and pid in _live_members(pid)

    # Another runner of the same root waits for the apply rather than fail on its lock.
    second: dict[str, Any] = {}
    waiting = threading.Thread(
        target=lambda: second.update(plan=TerraformRunner(terraform, work, env).plan())
    )
    waiting.start()
    waiting.join(1.0)
    assert waiting.is_alive() and not (work / "plan-2.stdout.jsonl").exists()

    began = time.monotonic()
    assert runner.cancel() is True
    assert runner.cancel() is False  # one SIGINT, never a second
    thread.join(15)
    assert not thread.is_alive() and time.monotonic() - began < 10
    waiting.join(60)
    assert second["plan"].changes["add"] == 1  # again: the interrupted one is tainted
    assert type(outcome["error"]) is TerraformCancelled
    assert str(outcome["error"]) == "terraform apply: cancelled"
    assert _live_members(pid) == []  # neither Terraform nor its `sleep` is left
    with pytest.raises(TerraformCancelled, match="cancelled before it started"):
        runner.output()


def test_interrupted_caller_takes_terraform_down(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C reaches only our process (Terraform has its own session), so the runner
    passes it on instead of leaving Terraform running."""
    started = threading.Event()
    runner = TerraformRunner(
        terraform,
        root(tmp_path, SLOW),
        env,
        on_event=lambda e: started.set() if e.type == "provision_start" else None,
    )
    runner.init()
    runner.plan()
    pids: list[int | None] = []

    def press_ctrl_c() -> None:
        if started.wait(30):
            pids.append(runner.pid)
            _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c).start()
    with pytest.raises(KeyboardInterrupt):
        runner.apply()
    assert pids and pids[0] is not None and _live_members(pids[0]) == []
    status = json.loads((tmp_path / "apply.status.json").read_text())
    assert status["returncode"] != 0


def test_timeout_interrupts_and_raises(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path
) -> None:
    work = root(tmp_path, SLOW)
    setup, _ = runner_for(terraform, env, work)
    setup.init()
    setup.plan()
    runner, _ = runner_for(terraform, env, work, timeout_s=1.0)
    began = time.monotonic()
    with pytest.raises(TerraformTimeout, match=r"^terraform apply: timed out"):
        runner.apply()
    assert time.monotonic() - began < 10


def test_parallel_roots(terraform: TerraformExe, env: dict[str, str], tmp_path: Path) -> None:
    hcl = """
resource "terraform_data" "{name}_1" {{
  provisioner "local-exec" {{ command = "sleep 1; echo {name} 1" }}
}}
resource "terraform_data" "{name}_2" {{
  provisioner "local-exec" {{ command = "sleep 1; echo {name} 2" }}
}}
"""
    names = ["left", "right"]
    runners = {n: runner_for(terraform, env, root(tmp_path / n, hcl.format(name=n))) for n in names}
    results: dict[str, Any] = {}

    def deploy(name: str) -> None:
        runner = runners[name][0]
        runner.init()
        runner.plan()
        results[name] = runner.apply()

    threads = [
        threading.Thread(target=_catch, args=(lambda n=n: deploy(n), results)) for n in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert "error" not in results, results.get("error")
    for name in names:
        assert sorted(results[name].applied) == [
            f"terraform_data.{name}_1",
            f"terraform_data.{name}_2",
        ]
        seen = {e.resource for e in runners[name][1] if e.resource}
        assert seen == {f"terraform_data.{name}_1", f"terraform_data.{name}_2"}


def test_broken_listener_does_not_stop_the_run(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: TfEvent) -> None:
        raise RuntimeError("listener bug")

    work = root(tmp_path, ROUND_TRIP)
    runner = TerraformRunner(terraform, work, env, on_event=explode)
    with caplog.at_level(logging.ERROR, logger="engine.terraform.runner"):
        runner.init()
        runner.plan({"greeting": "hi"})
        assert len(runner.apply().applied) == 2
    assert "on_event failed" in caplog.text


DRIVER = """
import sys
from pathlib import Path
from engine.terraform.binary import TerraformExe, terraform_env
from engine.terraform.runner import TerraformRunner
from tests.conftest import REPO
exe, work, home = TerraformExe(sys.argv[1:2], "test"), Path(sys.argv[2]), Path(sys.argv[3])
runner = TerraformRunner(exe, work, terraform_env(home))
runner.init()
runner.plan()
runner.apply()
"""
MANY_SLOW = """
resource "terraform_data" "r" {
  for_each = toset([for i in range(6) : tostring(i)])
  provisioner "local-exec" { command = "sleep ${2 + each.key % 3}; echo made ${each.key}" }
}
"""


def kill_driver_mid_apply(terraform: TerraformExe, work: Path, tf_home: Path) -> None:
    """Start a process driving init, plan and apply in ``work``; SIGKILL it mid-apply."""
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, terraform.argv[0], str(work), str(tf_home)],
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    apply_out = work / "apply.stdout.jsonl"
    while not (apply_out.exists() and "provision_start" in apply_out.read_text()):
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()


def test_item_1_terraform_outlives_its_killed_driver_and_saves_its_state(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path, tf_home: Path
) -> None:
    """Killed mid-apply, the driver used to take Terraform down with it (SIGPIPE on its
    output): resources made but never in the state, once a 0-byte state file. Now Terraform
    finishes, and the next command in the root waits for it."""
    work = root(tmp_path, MANY_SLOW)
    kill_driver_mid_apply(terraform, work, tf_home)
    runner, events = runner_for(terraform, env, work)
    plan = runner.plan()  # waits for the apply left running, then plans
    assert plan.changes == {"add": 0, "change": 0, "remove": 0}
    assert runner.leftover() is None
    state = json.loads((work / "terraform.tfstate").read_text())
    assert sorted(i["index_key"] for i in state["resources"][0]["instances"]) == list("012345")
    made = {e.resource for e in events if e.type == "apply_complete" and e.step == "apply"}
    assert made  # what it did while waited for, passed on as events
    status = json.loads((work / "apply.status.json").read_text())
    assert status["adopted_by"] == os.getpid() and status["error"] is None
    assert not (work / "terraform.pid").exists()


def test_item_1_a_leftover_apply_can_be_interrupted(
    terraform: TerraformExe, env: dict[str, str], tmp_path: Path, tf_home: Path
) -> None:
    work = root(tmp_path, MANY_SLOW)
    kill_driver_mid_apply(terraform, work, tf_home)
    runner, _ = runner_for(terraform, env, work)
    began = time.monotonic()
    found = runner.adopt(interrupt=True)
    assert found is not None and not found.running() and time.monotonic() - began < 4
    gone = runner.destroy()  # what it had made or started is in its state, and destroyed
    assert gone.changes["add"] == 0 and gone.changes["remove"] >= 1
    assert json.loads((work / "terraform.tfstate").read_text())["resources"] == []


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run; a zombie (dead, not yet reaped by
    whoever adopted it) does not count."""
    live = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat_file.parent.name))
    return live


def _catch(fn: Any, into: dict[str, Any]) -> None:
    try:
        fn()
    except BaseException as exc:
        into["error"] = exc
