"""``slipstream scale`` from the command line, in a process other than the one that
deployed: the run's agents find the new process's server and take part in the round."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e import cli, deploy_json

N = 1000
ANSWER = str(N * (N + 1) * (2 * N + 1) // 6)


def test_scale_from_another_process_and_its_usage_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(
        home, "cluster", "--multiplicity", "worker=1", "--input", f"problem_size={N}"
    )
    run_id = doc["id"]
    try:
        assert code == 0, doc
        grown = cli(home, "scale", run_id, "worker=+1", "--json")
        assert grown.returncode == 0, grown.stderr
        params = json.loads(grown.stdout)["params"]
        assert params["worker:ids"] == "1,2"
        assert params["head.1:answer"] == ANSWER
        assert params["head.1:scaled"] == "vm_create worker.2"
        # A quota is checked before the round: refused, nothing changes.
        user = json.loads(cli(home, "status", run_id, "--json").stdout)["user"]
        assert cli(home, "quota", "set", user, "local", "instances=3").returncode == 0
        over = cli(home, "scale", run_id, "worker=+2", "--json")
        assert over.returncode == 1
        assert "quota `local instances` exceeded (quota 3, current 3, requested 2)" in (over.stderr)
        assert cli(home, "quota", "set", user, "local", "instances=100").returncode == 0
        bad = cli(home, "scale", run_id, "worker=two")
        assert bad.returncode == 2
        assert "scale: `worker=two`: say NODE=+N or NODE=-N" in bad.stderr
        unknown = cli(home, "scale", run_id, "--remove", "worker.7")
        assert unknown.returncode == 2
        assert "worker.7: not a live instance of `worker` (live: worker.1, worker.2)" in (
            unknown.stderr
        )
    finally:
        done = cli(home, "destroy", run_id)
    assert done.returncode == 0, done.stderr
    refused = cli(home, "scale", run_id, "worker=+1")
    assert refused.returncode == 1
    assert f"scale: run `{run_id}` is Done: only a run in Ready can scale" in refused.stderr
