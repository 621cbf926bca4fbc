"""``slipstream user link NAME --slack TEAM:USER``: the identity the Slack app maps."""

from __future__ import annotations

from pathlib import Path

from engine.service import Service
from tests.e2e import cli


def test_link_maps_a_slack_identity_to_a_user(tmp_path: Path) -> None:
    cli(tmp_path, "user", "add", "alice", check=True)
    done = cli(tmp_path, "user", "link", "alice", "--slack", "T0123ABCD:U0456EFGH", check=True)
    assert done.stdout.strip() == "Slack user T0123ABCD:U0456EFGH acts as alice"
    assert Service(tmp_path, None).accounts.linked_user("slack", "T0123ABCD:U0456EFGH") == "alice"


def test_link_refuses_a_malformed_identity_or_an_unknown_user(tmp_path: Path) -> None:
    bad = cli(tmp_path, "user", "link", "alice", "--slack", "../U1")
    assert bad.returncode == 2 and "expected TEAM:USER" in bad.stderr
    unknown = cli(tmp_path, "user", "link", "nobody", "--slack", "T1:U1")
    assert unknown.returncode == 1 and "unknown user `nobody`" in unknown.stderr
