"""``max_failures`` end to end on the `local` cloud: an instance whose agent never checks
in (its token is wrong, so the server refuses it and it exits) is dropped from the run at
80 % of the timeout when its node tolerates it, and aborts the run, named, when not; an
instance that fails at the cloud (its launcher finds no token file, so its start fails in
the apply) is dropped at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.recipes.overrides import Overrides
from engine.runs.launcher import token_file
from engine.service import Service
from tests.e2e import agent_pids

COMPONENT = """\
kind: component
name: pinger
image: debian
size: small
outputs:
  pong: {description: set once deployed}
scripts:
  deployment: |
    ss-set pong "$(ss-get id)"
"""
DEPLOYMENT = """\
kind: deployment
name: pingers
keep_running: on-success
timeout: 20s
nodes:
  ping:
    component: pinger
    multiplicity: {m}
    max_failures: {n}
"""


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    from engine.cli.runs import driving_service

    monkeypatch.setenv("SLIPSTREAM_HOME", str(tmp_path / "home"))
    found = driving_service()
    yield found
    found.close()


def deploy_with_a_mute_instance(
    service: Service, root: Path, tolerated: int, count: int = 2
) -> str:
    root.mkdir()
    (root / "pinger.yaml").write_text(COMPONENT)
    (root / "pingers.yaml").write_text(DEPLOYMENT.format(n=tolerated, m=count))
    actor = service.local_actor("tester")
    run_id = service.deploy(actor, root / "pingers.yaml", Overrides(), root)
    # ping.2's agent starts but is refused by the server (401): it never checks in.
    token_file(service.home, run_id, "ping.2").write_text("not-the-token\n")
    return run_id


def test_tolerated_failures_reach_ready_without_them(service: Service, tmp_path: Path) -> None:
    run_id = deploy_with_a_mute_instance(service, tmp_path / "recipes", tolerated=2, count=3)
    token_file(service.home, run_id, "ping.3").unlink()  # its start fails in the apply
    actor = service.local_actor("tester")
    try:
        assert service.drive(run_id) == "Ready"
        params = service.params(actor, run_id)
        assert params["ping:ids"] == "1" and params["ping.1:pong"] == "1"
        assert params["ping.2:scale.state"] == params["ping.3:scale.state"] == "gone"
        dropped = [e.message for e in service.store.events(run_id) if e.kind == "dropped"]
        assert len(dropped) == 2, dropped
        assert dropped[0].startswith("dropped ping.3: failed at the cloud `local` (")
        assert dropped[0].endswith("(max_failures 2)")
        assert dropped[1] == (
            "dropped ping.2: did not check in within 80% of the 20s timeout (max_failures 2)"
        )
        assert set(agent_pids(run_id)) == {"ping.1"}
    finally:
        assert service.terminate(actor, run_id) == "Done"


def test_no_tolerated_failure_aborts_naming_it(service: Service, tmp_path: Path) -> None:
    run_id = deploy_with_a_mute_instance(service, tmp_path / "recipes", tolerated=0)
    assert service.drive(run_id) == "Aborted"
    run = service.store.get_run(run_id)
    assert run is not None
    assert run.abort_message == (
        "ping.2 did not check in within 80% of the 20s timeout: more than max_failures 0"
        " of node `ping`"
    )
    assert agent_pids(run_id) == {}
