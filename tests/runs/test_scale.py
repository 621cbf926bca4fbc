"""Scale actions end to end on the `local` cloud: a scalable `cluster` run grows and
shrinks in Ready while its head and workers re-coordinate (real Terraform, processes, HTTP).

One run does the whole story (the machine is shared): 2 workers → 4 → 3 (worker.3
removed) → +1 gets worker.5; after each step the combined answer is right, the head's
``on_vm_add``/``on_vm_remove`` saw the right ``$SLIPSTREAM_SCALING_VMS``, and each plan
touched only the instances of the action.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.errors import Conflict, UsageError
from engine.recipes.overrides import Overrides
from engine.service import Service
from tests.e2e import REPO, agent_pids

N = 10000
ANSWER = str(N * (N + 1) * (2 * N + 1) // 6)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    from engine.cli.runs import driving_service  # the CLI's wiring of the agents' server

    monkeypatch.setenv("SLIPSTREAM_HOME", str(tmp_path / "home"))
    found = driving_service()
    yield found
    found.close()


def scale_plans(service: Service, run_id: str) -> list[str]:
    return [e.message for e in service.store.events(run_id) if "scale plan" in e.message]


def wait_no_agent(run_id: str, instance: str, seconds: float = 20) -> dict[str, list[int]]:
    deadline = time.monotonic() + seconds
    while instance in (found := agent_pids(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_cluster_grows_to_four_shrinks_to_three_and_never_reuses_an_index(
    service: Service, tmp_path: Path
) -> None:
    actor = service.local_actor("tester")
    parsed = Overrides.parse([f"problem_size={N}"], [], ["worker=2"])
    run_id = service.deploy(actor, "cluster", parsed)
    head_log = tmp_path / "home" / "runs" / run_id / "sandboxes" / "head.1" / "work" / "scaling.log"
    try:
        assert service.drive(run_id) == "Ready"
        params = service.params(actor, run_id)
        assert params["worker:ids"] == "1,2" and params["head.1:answer"] == ANSWER
        assert params["worker.1:scale.state"] == params["head.1:scale.state"] == "operational"

        # +2: worker.3 and worker.4 run the whole chain, the head and workers on_vm_add
        assert service.scale(actor, run_id, ["worker=+2"]) == "Ready"
        params = service.params(actor, run_id)
        assert params["worker:ids"] == "1,2,3,4"
        assert params["worker:multiplicity"] == "4"
        assert params["head.1:answer"] == ANSWER
        assert params["head.1:scaled"] == "vm_create worker.3 worker.4"
        assert len(params["head.1:machinefile"].splitlines()) == 4
        assert params["worker.3:scale.state"] == params["worker.4:scale.state"] == "operational"
        assert sum(int(params[f"worker.{i}:partial"]) for i in (1, 2, 3, 4)) == int(ANSWER)
        assert scale_plans(service, run_id)[-1].endswith(
            'create terraform_data.worker["3"], create terraform_data.worker["4"]'
        )
        assert set(agent_pids(run_id)) == {"head.1", "worker.1", "worker.2", "worker.3", "worker.4"}

        # refusals change nothing
        with pytest.raises(UsageError, match="NODE=\\+N"):
            service.scale(actor, run_id, ["worker=3"])
        with pytest.raises(UsageError, match="at most 100"):
            service.scale(actor, run_id, ["worker=+101"])
        with pytest.raises(UsageError, match="not a live instance"):
            service.scale(actor, run_id, [], ["worker.9"])
        with pytest.raises(UsageError, match="one node per action"):
            service.scale(actor, run_id, ["worker=+1", "head=+1"])
        assert service.params(actor, run_id)["worker:ids"] == "1,2,3,4"

        # remove worker.3: it runs pre_scale and reports, then only it is destroyed
        assert service.scale(actor, run_id, [], ["worker.3"]) == "Ready"
        params = service.params(actor, run_id)
        assert params["worker:ids"] == "1,2,4"
        assert params["worker:multiplicity"] == "3"
        assert params["head.1:answer"] == ANSWER
        assert params["head.1:scaled"] == "vm_remove worker.3"
        assert params["worker.3:scale.state"] == "gone"
        assert params["worker.3:statecustom"] == "leaving: vm_remove worker.3"
        assert scale_plans(service, run_id)[-1].endswith(
            '1 change(s), delete terraform_data.worker["3"]'
        )
        assert "worker.3" not in wait_no_agent(run_id, "worker.3")
        assert set(agent_pids(run_id)) == {"head.1", "worker.1", "worker.2", "worker.4"}
        reports = {r["instance"] for r in service.store.reports(run_id)}
        assert "worker.3" in reports

        # a later +1 gets a fresh index: 5, never 3 again
        assert service.scale(actor, run_id, ["worker=+1"]) == "Ready"
        params = service.params(actor, run_id)
        assert params["worker:ids"] == "1,2,4,5"
        assert params["head.1:answer"] == ANSWER
        assert params["head.1:scaled"] == "vm_create worker.5"
        assert head_log.read_text().splitlines() == [
            "vm_create worker worker.3 worker.4",
            "vm_remove worker worker.3",
            "vm_create worker worker.5",
        ]
        kinds = [e.message for e in service.store.events(run_id) if e.kind == "scale"]
        assert any(m.startswith("scale worker=+1 requested by tester: worker.5") for m in kinds)
    finally:
        assert service.terminate(actor, run_id) == "Done"
    assert agent_pids(run_id) == {}


def test_scale_refused_when_not_scalable_or_not_ready(service: Service, tmp_path: Path) -> None:
    actor = service.local_actor("tester")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (REPO / "templates" / "deployments" / "webapp.yaml").read_text()
    (recipes / "webapp.yaml").write_text(text.replace("scalable: true", "scalable: false"))
    plain = service.deploy(actor, recipes / "webapp.yaml", Overrides(), recipes)
    scalable = service.deploy(actor, "cluster", Overrides())
    for run_id in (plain, scalable):
        service.manager().release(run_id)
    with pytest.raises(Conflict, match="is not scalable"):
        service.scale(actor, plain, ["web=+1"])
    with pytest.raises(Conflict, match="is Initializing: only a run in Ready can scale"):
        service.scale(actor, scalable, ["worker=+1"])
    with pytest.raises(UsageError, match="no node `nope`"):
        service.store.set_state(scalable, "Ready")
        service.coordinator.forget(scalable)
        service.scale(actor, scalable, ["nope=+1"])
    assert not (service.home / "runs" / plain / "tf" / "local" / ".terraform").exists()
    assert [i["name"] for i in service.store.instances(scalable)] == [
        "head.1",
        "worker.1",
        "worker.2",
        "worker.3",
    ]
