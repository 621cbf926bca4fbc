"""SlipStream applications, written the way SixSq's tutorials and examples wrote them,
deployed unchanged on the `local` cloud with real Terraform (issue 10).

The recipes under ``apps/`` carry over the tutorial's web server and test client
(slipstream/SlipStreamDocumentation docs/advanced_tutorial/), a Torque-like batch cluster
and a map-reduce job; their scripts use ``ss-get``/``ss-set``/``ss-get-all``/
``ss-display``/``ss-random`` as SlipStream scripts did. Each test checks the exact text
SlipStream's commands would have produced (slipstream/SlipStreamClient ss-*.py and
Client.py are the reference), several idioms per deployment to keep the suite short.
"""

from __future__ import annotations

import collections
import io
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e import cli, deploy_json, marked_processes

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The apps as a user's recipe root (a Git checkout of their own)."""
    root = tmp_path / "recipes"
    shutil.copytree(APPS, root)
    (root / ".git").mkdir()
    return root


def wait_gone(run_id: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def report(home: Path, run_id: str, instance: str) -> dict[str, str]:
    """The files of an instance's report archive, by their path inside it."""
    path = home / "runs" / run_id / "reports" / f"{instance}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes()), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_web_server_and_test_clients_of_the_tutorial(tmp_path: Path, root: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(
        home, str(root / "WebTutorial.yaml"), "--input", "apache:title=Hello from a node"
    )
    run_id = doc["id"]
    try:
        assert code == 0, doc
        assert doc["state"] == "Ready"
        p = doc["params"]
        port = p["apache.1:port"]
        assert p["ss:url.service"] == f"http://127.0.0.1:{port}/"
        assert p["apache.1:statecustom"] == "Webserver ready on 127.0.0.1!"
        for i in (1, 2):
            assert p[f"testclient.{i}:statecustom"] == "Web client exit code: 0"
            # Mapped inputs show under the instance that has them, as in SlipStream's run.
            assert p[f"testclient.{i}:webserver.hostname"] == "127.0.0.1"
            assert p[f"testclient.{i}:webserver.password"] == p["apache.1:password"]
            assert p[f"testclient.{i}:webserver.ready"] == "true"
        password = p["apache.1:password"]
        assert len(password) == 12 and password.isalnum()  # ss-random's default
        # ss-get-all printed `node.i:key value` lines; --value VALUE checked them all.
        assert p["apache.1:clients"] == (
            "testclient.1:statecustom Web client exit code: 0\n"
            "testclient.2:statecustom Web client exit code: 0"
        )
        assert p["apache.1:verdict"] == "all clients passed"
        assert p["testclient.2:probe"] == "\n".join(
            [
                "node_instance_name=testclient.2 nodename=testclient id=2",
                "multiplicity=2 own=2 ids=1,2",
                "cloudservice=local service-offer=small image.id=ubuntu-22.04",
                f"apache:hostname=127.0.0.1 apache:port={port}",
                "noblock=[] label=[]",
                "Error: Exceeded timeout limit of 1 waiting for key 'apache.1:never_set' to be set",
                "timeout exit=9",
            ]
        )
        with urllib.request.urlopen(p["ss:url.service"], timeout=10) as answer:
            page = answer.read().decode()
        assert "<title>Hello from a node</title>" in page  # --input apache:title=…
        files = report(home, run_id, "testclient.1")
        assert files["testclient.1/welcome.html"] == page
        log = files["testclient.1/logs/deployment.log"]
        assert "out| Return code from protected page w/ password is  200" in log
        assert report(home, run_id, "apache.1")["apache.1/clients.txt"] == (
            "testclient.1:statecustom Web client exit code: 0\n"
            "testclient.2:statecustom Web client exit code: 0\n"
        )
    finally:
        done = cli(home, "destroy", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert wait_gone(run_id) == []


def test_batch_cluster_and_map_reduce_in_one_run(tmp_path: Path, root: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(root / "Batch_Apps.yaml"), "--input", "reducer:label=wc")
    assert code == 0, doc
    assert doc["state"] == "Done"  # keep_running: never
    p = doc["params"]
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    assert p["torque_master.1:nodes"] == f"127.0.0.1 np={cores}\n127.0.0.1 np={cores}"
    assert p["torque_master.1:jobs"] == "\n".join(
        f"torque_worker.{i}:job_result torque_worker.{i} ran job {i}/2 of queue batch for 127.0.0.1"
        for i in (1, 2)
    )
    assert p["torque_master.1:statecustom"] == "all 2 workers done"
    assert p["torque_worker.2:queue"] == "batch"  # an input mapped to another node's input

    text = "the quick brown fox jumps over the lazy dog the end"
    words = text.split()
    shares = [collections.Counter(words[i - 1 :: 3]) for i in (1, 2, 3)]
    pairs = [" ".join(f"{w}:{c}" for w, c in sorted(share.items())) for share in shares]
    assert p["reducer.1:lines"] == "\n".join(
        f"procSAR.{i}:counts {pairs[i - 1]}" for i in (1, 2, 3)
    )
    merged = " ".join(f"{w}:{c}" for w, c in sorted(collections.Counter(words).items()))
    assert p["reducer.1:result"] == f"[wc] {merged}"
    assert p["procSAR.3:text"] == text  # reducer:text, itself from the deployment input
    assert wait_gone(doc["id"]) == []


def test_failing_sh_x_script_aborts_with_its_error_and_every_report_holds_the_logs(
    tmp_path: Path, root: Path
) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(root / "FailingApp.yaml"))
    run_id = doc["id"]
    assert code == 1, doc
    assert doc["state"] == "Aborted"
    assert doc["abort"] == "script `deployment` of `broken.1` failed (exit 3): input.dat is missing"
    # The run was destroyed (keep_running: on-success) after every instance reported.
    assert wait_gone(run_id) == []
    assert not (home / "runs" / run_id / "sandboxes").exists()
    broken = report(home, run_id, "broken.1")["broken.1/logs/deployment.log"]
    lines = [line.split(" ", 2)[2] for line in broken.splitlines() if "| " in line]
    assert lines[-3:] == [
        "err| + echo input.dat is missing",
        "err| input.dat is missing",
        "err| + exit 3",
    ]
    assert "out| loading input.dat" in lines
    for healthy in ("healthy.1", "healthy.2"):
        files = report(home, run_id, healthy)
        log = files[f"{healthy}/logs/deployment.log"]
        assert "ss-get: run aborted: script `deployment` of `broken.1` failed" in log
        # Its reporting ran after the abort and read past the fence (--ignore-abort).
        assert files[f"{healthy}/cleanup.txt"] == "peer was at: before input\n"
        assert "run aborted" in files[f"{healthy}/logs/agent.log"]


def test_a_kept_failed_run_keeps_its_logs_until_destroy(tmp_path: Path, root: Path) -> None:
    home = tmp_path / "home"
    code, doc = deploy_json(home, str(root / "KeptFailure.yaml"))
    run_id = doc["id"]
    try:
        assert code == 1, doc
        assert doc["state"] == "Aborted"
        assert doc["abort"] == (
            "script `deployment` of `waiter.1` failed (exit 9): "
            "Error: Exceeded timeout limit of 2 waiting for key 'source.1:never' to be set"
        )
        log = home / "runs" / run_id / "sandboxes" / "waiter.1" / "work" / "logs"
        assert "err| Error: Exceeded timeout limit of 2" in (log / "deployment.log").read_text()
    finally:
        done = cli(home, "destroy", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert wait_gone(run_id) == []
    assert not (home / "runs" / run_id / "sandboxes").exists()
