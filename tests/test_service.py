"""The service facade without deploying: runs are stored, secrets are masked everywhere a
user can read them."""

from __future__ import annotations

from pathlib import Path

from engine.recipes.overrides import Overrides
from engine.service import Service


def test_sensitive_inputs_are_masked_for_users(tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    root.mkdir()
    (root / "vault.yaml").write_text(
        "kind: component\nname: vault\nimage: debian-12\n"
        "inputs:\n  admin_password: {sensitive: true}\n  plain: {default: visible}\n"
    )
    (root / "safe.yaml").write_text(
        "kind: deployment\nname: safe\ninputs:\n  password: {sensitive: true}\n"
        "nodes:\n  v:\n    component: vault\n    multiplicity: 2\n"
        "    inputs:\n      admin_password: {from: input:password}\n"
    )
    service = Service(tmp_path / "home", serve=None)
    run_id = service.deploy(
        service.local_actor("alice"),
        root / "safe.yaml",
        Overrides.parse(inputs=["password=hunter2-secret"]),
        root,
    )
    stored = service.store.params(run_id)
    assert stored["v.1:admin_password"] == "hunter2-secret"  # agents need the value
    shown = service.params(service.local_actor("alice"), run_id)
    assert shown["v.1:admin_password"] == shown["v.2:admin_password"] == "***"
    assert shown["v.1:plain"] == "visible"
    doc = service.get_run(service.local_actor("alice"), run_id)
    assert "hunter2-secret" not in repr(doc)
    assert all(
        "hunter2-secret" not in e.message
        for e in service.events(service.local_actor("alice"), run_id)
    )
    compiled = (tmp_path / "home" / "runs" / run_id / "tf" / "local" / "main.tf.json").read_text()
    assert "hunter2-secret" not in compiled


def test_outputs_feeding_a_sensitive_input_are_masked(tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    root.mkdir()
    (root / "maker.yaml").write_text(
        "kind: component\nname: maker\nimage: debian-12\noutputs:\n  password: {}\n"
    )
    (root / "taker.yaml").write_text(
        "kind: component\nname: taker\nimage: debian-12\n"
        "inputs:\n  db_password: {sensitive: true}\n"
    )
    (root / "pair.yaml").write_text(
        "kind: deployment\nname: pair\nnodes:\n  db: {component: maker}\n"
        "  app:\n    component: taker\n    inputs:\n      db_password: {from: db:password}\n"
    )
    service = Service(tmp_path / "home", serve=None)
    run_id = service.deploy(service.local_actor("alice"), root / "pair.yaml", None, root)
    service.coordinator.publish(run_id, {"db.1:password": "s3cret-value"})
    assert service.params(service.local_actor("alice"), run_id)["db.1:password"] == "***"
    assert "s3cret-value" not in repr(service.get_run(service.local_actor("alice"), run_id))
