"""Quotas and usage through the service facade, without deploying: runs are created (their
instances count as held) but never driven, and events are written with chosen times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.access import Actor
from engine.errors import AccessDenied, NotFound
from engine.recipes.overrides import Overrides
from engine.runs.quotas import Amount, QuotaExceeded, Quotas, size_amount
from engine.runs.usage import measure
from engine.service import Service
from engine.store.runstore import NewInstance, NewRun, RunStore

COMPONENT = "kind: component\nname: box\nimage: debian-12\nsize: medium\n"


@pytest.fixture
def service(tmp_path: Path) -> Service:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "box.yaml").write_text(COMPONENT)
    return Service(tmp_path / "home", serve=None)


def deploy(service: Service, who: str, n: int) -> str:
    root = service.home.parent / "recipes"
    overrides = Overrides.parse(multiplicity=[f"box={n}"])
    return service.deploy(service.local_actor(who), "box", overrides, root)


def test_deploys_count_until_refused_with_the_numbers(service: Service) -> None:
    admin = service.local_actor("root")
    service.set_quota(admin, "alice", "local", instances=5)
    deploy(service, "alice", 3)
    deploy(service, "bob", 4)  # bob has no quota; his runs are not alice's
    runs = sorted(p.name for p in (service.home / "runs").iterdir())
    with pytest.raises(QuotaExceeded) as refused:
        deploy(service, "alice", 3)
    assert str(refused.value) == (
        "quota `local instances` exceeded (quota 5, current 3, requested 3) for user `alice`"
    )
    assert sorted(p.name for p in (service.home / "runs").iterdir()) == runs  # nothing new
    deploy(service, "alice", 2)  # exactly up to the quota is fine


def test_cpu_and_ram_follow_the_size_and_everyone_gets_the_default(service: Service) -> None:
    admin = service.local_actor("root")
    service.set_quota(admin, "*", "local", cpu=4)  # medium: 2 CPUs, 4 GiB each
    deploy(service, "carol", 2)
    with pytest.raises(QuotaExceeded, match=r"`local cpu` exceeded \(quota 4, current 4, req"):
        deploy(service, "carol", 1)
    service.set_quota(admin, "carol", "local", ram_gb=10)  # her own row replaces the default
    with pytest.raises(QuotaExceeded, match=r"`local ram` exceeded \(quota 10, current 8, req"):
        deploy(service, "carol", 1)
    rows = service.quotas(admin, "carol")
    own = next(r for r in rows if r["user"] == "carol")
    assert own["current"] == {"instances": 2, "cpu": 4, "ram_gb": 8.0}


def test_the_scaling_check_is_the_same_function(service: Service) -> None:
    service.set_quota(service.local_actor("root"), "dave", "local", instances=3)
    deploy(service, "dave", 2)
    quotas = Quotas(service.store)
    quotas.check("dave", "local", Amount(1, 2, 4.0))
    with pytest.raises(QuotaExceeded, match=r"\(quota 3, current 2, requested 2\)"):
        quotas.check("dave", "local", Amount(2, 4, 8.0))


def test_only_admins_set_quotas_and_clouds_must_exist(service: Service) -> None:
    with pytest.raises(AccessDenied, match="not an administrator"):
        service.set_quota(Actor("eve"), "eve", "local", instances=100)
    with pytest.raises(NotFound, match="unknown cloud `mars`"):
        service.set_quota(service.local_actor("root"), "eve", "mars", instances=1)
    with pytest.raises(ValueError, match="negative"):
        Quotas(service.store).set("eve", "local", instances=-1)
    assert service.quotas(service.local_actor("root")) == []


def test_lifting_every_limit_removes_the_quota(service: Service) -> None:
    admin = service.local_actor("root")
    service.set_quota(admin, "frank", "local", instances=1)
    service.set_quota(admin, "frank", "local")
    deploy(service, "frank", 3)


def test_sizes_as_the_spec_writes_them() -> None:
    assert size_amount("xlarge") == Amount(1, 8, 32.0)
    assert size_amount("cpu=3,ram_gb=1.5,disk_gb=10") == Amount(1, 3, 1.5)
    assert size_amount("") == Amount(1)


def _event(store: RunStore, run_id: str, at: float, kind: str, message: str, data=None) -> None:  # type: ignore[no-untyped-def]
    row = (run_id, at, kind, message, json.dumps(data or {}))
    store.write(
        lambda conn: conn.execute(
            "INSERT INTO events (run_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)", row
        )
    )


def test_usage_from_apply_destroy_and_instance_events() -> None:
    store = RunStore.open("sqlite://")
    spec = json.dumps({"nodes": {"web": {"size": "small"}, "db": {"size": "large"}}})
    store.create_run(
        NewRun("r1", "webapp", "alice", "on-success", 60, spec),
        [
            NewInstance("web.1", "web", 1, "aws-eu", "h1"),
            NewInstance("web.2", "web", 2, "aws-eu", "h2"),
            NewInstance("db.1", "db", 1, "local", "h3"),
        ],
        {},
    )
    _event(store, "r1", 1000.0, "terraform", "aws-eu: apply done")
    _event(store, "r1", 1000.0, "terraform", "local: apply done")
    _event(
        store,
        "r1",
        1000.0 + 1800,
        "instance",
        "web.2 removed",
        {"instance": "web.2", "change": "down"},
    )
    _event(store, "r1", 1000.0 + 7200, "terraform", "aws-eu: destroy done")
    rows = {(r.cloud, r.size): r for r in measure(store, now=1000.0 + 3 * 3600)}
    assert rows["aws-eu", "small"].instances == 2
    assert rows["aws-eu", "small"].hours == pytest.approx(2.0 + 0.5)
    assert rows["local", "large"].hours == pytest.approx(3.0)  # still running: until now
    since = measure(store, since=1000.0 + 3600, now=1000.0 + 3 * 3600)
    assert {(r.cloud, round(r.hours, 3)) for r in since} == {("aws-eu", 1.0), ("local", 2.0)}
    assert measure(store, user="bob") == []


def test_usage_of_others_needs_admin(service: Service) -> None:
    with pytest.raises(AccessDenied):
        service.usage(Actor("eve"), "alice")
    assert service.usage(Actor("eve")) == []


def test_a_build_machine_counts_against_the_quota(service: Service) -> None:
    root = service.home.parent / "recipes"
    (root / "tooled.yaml").write_text(
        "kind: component\nname: tooled\nimage: box\nscripts:\n  post_install: echo hi\n"
    )
    service.set_quota(service.local_actor("root"), "gina", "local", ram_gb=2)
    with pytest.raises(QuotaExceeded, match=r"`local ram` exceeded \(quota 2, current 0, req"):
        service.build(service.local_actor("gina"), "tooled", ["local"], root)
    assert not (service.home / "runs").exists()
