"""The `ssh` cloud end to end, with nothing faked but the hosts' package manager.

Three hosts that take the test's key, one that refuses it, and an address where nothing
answers (:mod:`tests.clouds.netns`); a real ``slipstream serve`` listening on the hosts'
bridge over HTTPS, its self-signed certificate pinned by the agents; real Terraform whose
``file`` and ``remote-exec`` provisioners install and start the agent on each host over SSH.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clouds.netns import Network, require
from tests.e2e import REPO, cli
from webhooks.tls import fingerprint

# A run is created as a front door does it (the REST API will: until then, in Python), and
# the resident service's take-over sweep drives it.
CREATE = """
import sys
from pathlib import Path
from engine.recipes.overrides import Overrides
from engine.service import Service
home, ref, root = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
service = Service(home, None)
overrides = Overrides.parse([], sys.argv[4].split(), sys.argv[5].split())
run_id = service.deploy(service.local_actor("tester"), ref, overrides, Path(root) if root else None)
service.manager().release(run_id)
print(run_id)
"""
PROBE = {
    "probe.yaml": "kind: component\nname: probe\nimage: debian-12\n"
    "scripts:\n  deployment: ss-display up\n",
    "one.yaml": "kind: deployment\nname: one\nnodes:\n  n: {component: probe}\n",
}
OVER = ("Ready", "Done", "Aborted", "Cancelled")


class Serve:
    """``slipstream serve`` on the bridge, its public URL HTTPS on the bridge's address."""

    def __init__(self, home: Path, address: str) -> None:
        self.home = home
        self.address = address
        with socket.socket() as sock:
            sock.bind((address, 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"https://{address}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        args = ["serve", "--host", self.address, "--port", str(self.port)]
        with open(self.home / "serve.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli.app", *args, "--public-url", self.url],
                cwd=REPO,
                env=dict(os.environ, SLIPSTREAM_HOME=str(self.home)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        # Only the agents pin the certificate; this only waits for the server to answer.
        unchecked = ssl.create_default_context()
        unchecked.check_hostname = False
        unchecked.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (self.home / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2, context=unchecked):
                    return self
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = Network(tmp_path_factory.mktemp("ssh-hosts"), accepting=3, refusing=1).up()
    try:
        yield network
    finally:
        network.down()
    assert network.leftovers() == []


@pytest.fixture(scope="module")
def home(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ssh-home")
    rack = ", ".join(f"{{address: {h.address}}}" for h in network.hosts[:3])
    common = f"type: ssh, user: root, key_file: {network.key}, connect_timeout: 5s"
    (home / "clouds.yaml").write_text(
        "clouds:\n"
        f"  rack: {{{common}, hosts: [{rack}]}}\n"
        f"  locked: {{{common}, hosts: [{{address: {network.hosts[3].address}}}]}}\n"
        f"  gone: {{{common}, hosts: [{{address: {network.down_address}}}]}}\n"
    )
    return home


@pytest.fixture(scope="module")
def serve(home: Path, network: Network) -> Iterator[Serve]:
    served = Serve(home, network.gateway).start()
    try:
        yield served
    finally:
        served.stop()


def create(
    home: Path, ref: str, clouds: str, multiplicity: str = "", root: Path | None = None
) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CREATE, str(home), ref, str(root or ""), clouds, multiplicity],
        cwd=REPO,
        env=dict(os.environ, SLIPSTREAM_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_over(home: Path, run_id: str, seconds: float = 90) -> dict[str, object]:
    """The run's document once it is Ready or over."""
    deadline = time.monotonic() + seconds
    while True:
        doc: dict[str, object] = json.loads(
            cli(home, "status", run_id, "--json", check=True).stdout
        )
        if doc["state"] in OVER:
            return doc
        if time.monotonic() > deadline:
            logs = cli(home, "logs", run_id).stdout
            raise AssertionError(f"run {run_id} stayed in {doc['state']}:\n{logs}")
        time.sleep(0.5)


def test_the_cluster_runs_on_three_hosts_and_destroy_leaves_nothing_on_them(
    network: Network, home: Path, serve: Serve
) -> None:
    run_id = create(home, "cluster", "head=rack worker=rack", "worker=2")
    doc = wait_over(home, run_id)
    assert (doc["state"], doc["abort"]) == ("Ready", None)
    params = doc["params"]
    assert isinstance(params, dict)
    n = 1_000_000  # the template's problem_size
    assert params["head.1:answer"] == str(n * (n + 1) * (2 * n + 1) // 6)
    head, first, second = (h.address for h in network.hosts[:3])
    assert [params[f"{i}:hostname"] for i in ("head.1", "worker.1", "worker.2")] == [
        head,
        first,
        second,
    ]
    slots = len(os.sched_getaffinity(0))  # what `nproc` counts on the hosts
    assert params["head.1:machinefile"] == f"{first} slots={slots}\n{second} slots={slots}"

    # Each host runs its instance's agent, which reached the server over HTTPS pinning the
    # certificate `serve` made, as its settings on the host say.
    pinned = fingerprint(home / "tls" / "cert.pem")
    for host, instance in zip(network.hosts[:3], ("head.1", "worker.1", "worker.2"), strict=True):
        assert list(host.processes().values()) == ["python3 agent.py run --env-file agent.env"]
        env = (host.home / ".slipstream" / run_id / instance / "agent.env").read_text()
        assert f"SLIPSTREAM_SERVER={serve.url}\n" in env
        assert f"SLIPSTREAM_SERVER_FINGERPRINT={pinned}\n" in env
    assert network.hosts[3].processes() == {}

    # The run is the resident server's: stopped, it lets go, and the CLI destroys.
    serve.stop()
    try:
        done = cli(home, "destroy", run_id, timeout=120)
        assert (done.returncode, done.stdout.strip()) == (0, f"run {run_id}: Done"), done.stderr
        for host in network.hosts[:3]:
            assert host.settle() == {}, f"left running on {host.address}"
            assert list(host.home.iterdir()) == [], f"left on {host.address}"
    finally:
        serve.start()


def test_a_host_that_refuses_the_key_and_a_host_that_is_down_are_named(
    network: Network, home: Path, serve: Serve, tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    for name, text in PROBE.items():
        (tmp_path / name).write_text(text)
    refused = create(home, "one", "n=locked", root=tmp_path)
    down = create(home, "one", "n=gone", root=tmp_path)
    locked = network.hosts[3].address
    doc = wait_over(home, refused, seconds=60)
    assert doc["state"] == "Aborted"
    assert f"SSH authentication failed (root@{locked}:22)" in str(doc["abort"])
    doc = wait_over(home, down, seconds=60)
    assert doc["state"] == "Aborted"
    assert f"dial tcp {network.down_address}:22" in str(doc["abort"])
    assert network.hosts[3].processes() == {}
    assert list(network.hosts[3].home.iterdir()) == []


def test_a_pool_too_small_is_refused_naming_its_hosts(network: Network, home: Path) -> None:
    runs_before = cli(home, "list", "--json", check=True).stdout
    done = cli(home, "deploy", "cluster", "--cloud", "head=rack", "--cloud", "worker=rack")
    hosts = ", ".join(h.address for h in network.hosts[:3])
    assert done.returncode == 1
    assert f"cloud `rack`: 4 instance(s) need a host each, the pool has 3 ({hosts})" in done.stderr
    assert cli(home, "list", "--json", check=True).stdout == runs_before  # no run made


def test_without_root_the_hosts_cannot_be_made_and_the_test_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="only root can make"):
        require()


def test_the_network_is_there_while_up_and_leaves_nothing_once_down(tmp_path: Path) -> None:
    network = Network(tmp_path / "net", accepting=1, refusing=0).up()
    try:
        there = network.leftovers()
        assert f"namespace {network.hosts[0].name}" in there
        assert f"interface {network.bridge}" in there
        assert any(item.startswith("sshd ") for item in there)
    finally:
        network.down()
    assert network.leftovers() == []
