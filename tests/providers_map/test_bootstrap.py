"""The base64 form of the agent bootstrap script is, once Terraform has evaluated it, exactly
the plain script base64-encoded: same values filled in, same bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from engine.canonical import dumps
from providers_map.base import COMMON_VARIABLES
from providers_map.bootstrap import AGENT_VARIABLES, user_data, user_data_base64

TOKEN = "t'o\"k$en ${x} %{y} `id` \\n"


def test_base64_user_data_is_the_plain_script_encoded(tmp_path: Path, run_tf) -> None:  # type: ignore[no-untyped-def]
    doc = {
        "variable": {**COMMON_VARIABLES, **AGENT_VARIABLES},
        "resource": {
            "terraform_data": {
                "web": {
                    "for_each": {"2": {"instance": "web.2", "index": 2}},
                    "input": {"plain": user_data(), "encoded": user_data_base64()},
                }
            }
        },
        "output": {"both": {"sensitive": True, "value": '${terraform_data.web["2"].output}'}},
    }
    (tmp_path / "main.tf.json").write_text(dumps(doc), encoding="utf-8")
    (tmp_path / "v.tfvars.json").write_text(
        json.dumps(
            {
                "run_id": "run-9",
                "server_url": "https://slipstream.example:8443/",
                "server_fingerprint": "sha256:" + "0" * 64,
                "agent_sha256": "1" * 64,
                "agent_tokens": {"web.2": TOKEN},
            }
        ),
        encoding="utf-8",
    )
    run_tf(tmp_path, "init", "-input=false", "-no-color", "-backend=false")
    run_tf(
        tmp_path, "apply", "-input=false", "-no-color", "-auto-approve", "-var-file=v.tfvars.json"
    )
    both = json.loads(run_tf(tmp_path, "output", "-json", "-no-color").stdout)["both"]["value"]
    plain, encoded = both["plain"], both["encoded"]
    assert base64.b64decode(encoded).decode("utf-8") == plain
    assert "TOKEN='t'\\''o\"k$en ${x} %{y} `id` \\n'\n" in plain
    assert 'AGENT_URL="${SERVER%/}/agent/v1/agent.py"' in plain
