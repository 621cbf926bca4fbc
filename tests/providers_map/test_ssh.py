"""The `ssh` mapping's own choices; `tests/clouds/test_ssh_e2e.py` runs it on real hosts."""

from __future__ import annotations

import pytest

from engine.errors import RecipeInvalid
from engine.recipes.clouds import parse_clouds_text
from tests.providers_map.test_aws import compile_on

HOSTS = ", ".join(f"{{address: 192.0.2.{i}}}" for i in range(1, 5))
CLOUDS = "clouds:\n  rack: {type: ssh, hosts: [" + HOSTS + "]%s}\n"


def test_connect_timeout_bounds_how_long_terraform_tries_a_host() -> None:
    doc = compile_on("rack", "cluster", CLOUDS % ", connect_timeout: 30s", None)
    body = doc["resource"]["terraform_data"]["head"]
    assert body["connection"]["timeout"] == "30s"
    assert (
        "timeout"
        not in compile_on("rack", "webapp", CLOUDS % "")["resource"]["terraform_data"]["db"][
            "connection"
        ]
    )


@pytest.mark.parametrize("value", ["30", "0s", "1d", "forever"])
def test_a_connect_timeout_that_terraform_would_not_read_is_refused(value: str) -> None:
    with pytest.raises(RecipeInvalid, match="connect_timeout"):
        parse_clouds_text(CLOUDS % f", connect_timeout: '{value}'")


def test_the_agent_is_started_before_the_session_ends_and_stopped_from_its_folder() -> None:
    body = compile_on("rack", "webapp", CLOUDS % "")["resource"]["terraform_data"]["db"]
    start, stop = body["provisioner"][3]["remote-exec"], body["provisioner"][4]["remote-exec"]
    # A job left in the background dies with the session's terminal (SIGHUP).
    assert not any(line.rstrip().endswith("&") for line in start["inline"])
    assert "nohup setsid -f python3 agent.py run" in start["inline"][-1]
    assert stop["when"] == "destroy"
    assert (
        "(cd .slipstream/${self.input.run_id}/${self.input.instance} && python3"
        in (stop["inline"][0])
    )
