"""A declaration's ``approvers`` narrow who may approve its held runs: the ``approve``
right is still needed, and so is a name on the list (administrators: always)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.access import Actor
from engine.errors import AccessDenied
from engine.service import Service
from tests.webhooks.test_git_hooks import GREETER, hello


def test_only_listed_approvers_with_the_right_may_approve(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "hello.yaml").write_text(hello())
    (tmp_path / "recipes" / "greeter.yaml").write_text(GREETER)
    service = Service(tmp_path / "home", None)
    origin = {"repository": "infra", "declaration": "hello", "approvers": ["alice"]}
    run_id = service.deploy(
        Actor("repo:infra"), "hello", None, tmp_path / "recipes", hold=True, origin=origin
    )
    service.manager().release(run_id)
    right = frozenset({("hello", "approve")})
    with pytest.raises(AccessDenied):
        service.approve(Actor("bob", rights=right), run_id)  # the right, not on the list
    with pytest.raises(AccessDenied):
        service.reject(Actor("bob", rights=right), run_id)
    with pytest.raises(AccessDenied):
        service.approve(Actor("alice"), run_id)  # on the list, without the right
    assert service.store.get_run(run_id).approval == "pending"  # type: ignore[union-attr]
    service.approve(Actor("alice", rights=right), run_id)
    assert service.store.get_run(run_id).approval == "approved"  # type: ignore[union-attr]
