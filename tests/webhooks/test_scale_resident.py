"""A scale action through `slipstream serve`: the REST call answers 202 at once, the round
goes on as a job of the resident service (which keeps the run's agents), and the CLI as
a client says why a refused one is refused."""

from __future__ import annotations

import time
from pathlib import Path

from tests.served import serve

RUNS = "/api/v1/runs"
FILES = {
    "lib/box.yaml": """\
kind: component
name: box
image: ubuntu-22.04
outputs:
  seen: {}
scripts:
  deployment: |
    ss-set seen "$(ss-get one:ids)"
  on_vm_add: |
    ss-set seen "$SLIPSTREAM_SCALING_ACTION $SLIPSTREAM_SCALING_VMS"
""",
    "boxes.yaml": """\
kind: deployment
name: boxes
scalable: true
nodes:
  one: {component: box}
""",
}


def test_scale_through_the_resident_service(tmp_path: Path) -> None:
    served = serve(tmp_path / "home", tls=False)
    try:
        token = served.user("alice", admin=True)
        made = served.call("POST", RUNS, token, {"deployment": "boxes", "files": FILES})
        assert made.status == 201, made.raw
        run_id = made.json["id"]
        list(served.stream(f"{RUNS}/{run_id}/events/stream?until=settled", token))
        assert served.call("GET", f"{RUNS}/{run_id}", token).json["state"] == "Ready"

        answer = served.call("POST", f"{RUNS}/{run_id}/scale", token, {"changes": ["one=+1"]})
        assert answer.status == 202, answer.raw
        deadline = time.monotonic() + 120
        params: dict[str, str] = {}
        while time.monotonic() < deadline:
            doc = served.call("GET", f"{RUNS}/{run_id}", token).json
            params = doc["params"]
            if doc["state"] == "Ready" and params.get("one.2:scale.state") == "operational":
                break
            assert doc["state"] in ("Ready", "Provisioning", "Executing", "SendingReports"), doc
            time.sleep(0.5)
        assert params["one:ids"] == "1,2"
        assert params["one.1:seen"] == "vm_create one.2"
        assert params["one.2:seen"] == "1,2"

        refused = served.client(token, "scale", run_id, "two=+1")
        assert refused.returncode == 1
        assert f"run `{run_id}` has no node `two`" in refused.stderr
        done = served.client(token, "destroy", run_id)
        assert done.returncode == 0, done.stderr
    finally:
        served.stop()
    assert "Traceback" not in served.log.read_text(errors="replace")
