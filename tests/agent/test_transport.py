"""How the agent reaches its server and how scripts reach the agent (DESIGN section 4).

- Scripts' ``ss-*`` commands go to the daemon over its Unix socket; the daemon's
  connections to the server are kept alive and shared; scripts never see the token.
- On ``local`` the server is a Unix socket: the agent refuses one that someone else could
  have put there. On other clouds it is HTTPS with a pinned certificate: the agent sends
  nothing (its token least of all) to a server whose certificate is not the pinned one.
"""

from __future__ import annotations

import hashlib
import os
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.agent.test_agent import (
    AGENT,
    INSTANCE,
    TOKEN,
    FakeServer,
    agent,
    agent_env,
    make_handler,
    part,
    run_daemon,
)


class CountingServer(FakeServer):
    """The fake coordination server speaking HTTP/1.1 (keep-alive), counting connections."""

    def __init__(self) -> None:
        super().__init__()
        self.httpd.RequestHandlerClass = keep_alive(self.httpd.RequestHandlerClass, self)
        self.connections = 0


def keep_alive(handler: type[BaseHTTPRequestHandler], fake: CountingServer) -> type:
    class KeepAlive(handler):  # type: ignore[valid-type,misc]
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake.cond:
                fake.connections += 1

    return KeepAlive


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.close()


def test_scripts_reach_the_server_through_the_agent_on_few_connections(
    counting: CountingServer, tmp_path: Path
) -> None:
    counting.set_param("db.1:url", "pg://db")
    counting.recipe["scripts"] = {
        "deployment": [
            part(
                "web",
                'for i in 1 2 3 4 5 6 7 8 9 10; do ss-set url "v$i"; done\n'
                "ss-get db.1:url > got.txt\n"
                "printf 's3cret\\n' | ss-set url -\n"
                "env > env.txt\n",
            )
        ],
    }
    workdir = tmp_path / "w"
    done = run_daemon(counting, workdir)
    assert done.returncode == 0, (workdir / "agent.log").read_text()
    assert (workdir / "got.txt").read_text() == "pg://db\n"
    assert counting.params[f"{INSTANCE}:url"] == "s3cret"  # from stdin, newline dropped
    env = (workdir / "env.txt").read_text()
    assert TOKEN not in env and "SLIPSTREAM_SERVER" not in env
    assert f"SLIPSTREAM_AGENT_SOCKET={workdir}/.agent/ss.sock" in env
    # 11 sets, a get, the recipe, votes, events, state polls and a report: a handful of
    # kept-alive connections, not one per request.
    requests = len(counting.requests)
    assert requests >= 20
    assert counting.connections <= 3, (counting.connections, requests)


def test_the_ss_socket_is_private(counting: CountingServer, tmp_path: Path) -> None:
    counting.recipe["scripts"] = {
        "deployment": [part("web", "stat -c %a .agent .agent/ss.sock > modes.txt\n")]
    }
    workdir = tmp_path / "w"
    assert run_daemon(counting, workdir).returncode == 0
    assert (workdir / "modes.txt").read_text().split() == ["700", "600"]


def test_a_wrapper_without_its_agent_says_so(tmp_path: Path) -> None:
    wrapper = tmp_path / "ss-get"
    source = AGENT.read_text()
    start = source.index('WRAPPER = """') + len('WRAPPER = """')
    template = source[start : source.index('"""', start)]
    text = template.format(
        python=sys.executable, command="ss-get", socket=str(tmp_path / "none.sock")
    ).replace("\\\\n", "\\n")
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    done = subprocess.run([str(wrapper), "k"], capture_output=True, text=True, check=False)
    assert done.returncode == 4  # SlipStream's NetworkError: nothing to talk to
    assert done.stderr.startswith("ss-get: the agent is not answering (")


# -- the local cloud: a Unix socket in a private folder ------------------------------------


@pytest.fixture
def unix_fake(tmp_path: Path) -> Iterator[tuple[FakeServer, Path]]:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "agent.sock"
    fake = start_unix_fake(path)
    yield fake, folder
    fake.close()


def start_unix_fake(path: Path) -> FakeServer:
    """The fake server, moved from its TCP port to a Unix socket at ``path``."""
    fake = FakeServer()
    fake.httpd.shutdown()
    fake.httpd.server_close()
    fake.httpd = socketserver.ThreadingUnixStreamServer(str(path), make_handler(fake))  # type: ignore[assignment]
    fake.httpd.daemon_threads = True
    fake.thread = threading.Thread(
        target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    fake.thread.start()
    return fake


def test_unix_socket_server(unix_fake: tuple[FakeServer, Path]) -> None:
    fake, folder = unix_fake
    fake.set_param("db.1:url", "over a unix socket")
    done = agent(agent_env(f"unix:{folder / 'agent.sock'}"), "ss-get", "db.1:url")
    assert (done.returncode, done.stdout) == (0, "over a unix socket\n"), done.stderr


def test_unix_socket_with_a_very_long_path(tmp_path: Path) -> None:
    folder = tmp_path / ("d" * 60) / ("e" * 60) / "ctl"
    folder.mkdir(parents=True, mode=0o700)
    fake = start_unix_fake_long(folder / "agent.sock")
    try:
        fake.set_param("db.1:url", "deep")
        done = agent(agent_env(f"unix:{folder / 'agent.sock'}"), "ss-get", "db.1:url")
        assert (done.returncode, done.stdout) == (0, "deep\n"), done.stderr
    finally:
        fake.close()


def start_unix_fake_long(path: Path) -> FakeServer:
    """Binds through /proc/self/fd, as the server does for paths over 107 bytes."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        return start_unix_fake(Path(f"/proc/self/fd/{fd}/{path.name}"))
    finally:
        os.close(fd)


def test_a_socket_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    fake = start_unix_fake(folder / "agent.sock")
    try:
        folder.chmod(0o777)  # anyone could have planted this socket
        fake.set_param("db.1:url", "from an impostor")
        env = agent_env(f"unix:{folder / 'agent.sock'}", SLIPSTREAM_RETRY_SECONDS="1")
        done = agent(env, "ss-get", "db.1:url")
        assert done.returncode == 6  # SlipStream's SecurityError
        assert "is not private" in done.stderr
        assert fake.requests == []  # nothing was sent, the token least of all
    finally:
        folder.chmod(0o700)
        fake.close()


# -- other clouds: HTTPS with a pinned certificate -----------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"),
            *("-subj", "/CN=slipstream-test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, "sha256:" + hashlib.sha256(der).hexdigest()


@pytest.fixture
def tls_fake(certificate: tuple[Path, Path, str]) -> Iterator[FakeServer]:
    cert, key, _ = certificate
    fake = FakeServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake.httpd.socket = context.wrap_socket(fake.httpd.socket, server_side=True)
    yield fake
    fake.close()


def test_pinned_https(tls_fake: FakeServer, certificate: tuple[Path, Path, str]) -> None:
    tls_fake.set_param("db.1:url", "over TLS")
    url = tls_fake.url.replace("http://", "https://")
    env = agent_env(url, SLIPSTREAM_SERVER_FINGERPRINT=certificate[2])
    done = agent(env, "ss-get", "db.1:url")
    assert (done.returncode, done.stdout) == (0, "over TLS\n"), done.stderr


def test_a_server_with_another_certificate_gets_nothing(tls_fake: FakeServer) -> None:
    url = tls_fake.url.replace("http://", "https://")
    env = agent_env(url, SLIPSTREAM_SERVER_FINGERPRINT="sha256:" + "0" * 64)
    env["SLIPSTREAM_RETRY_SECONDS"] = "1"
    done = agent(env, "ss-set", "url", "x")
    assert done.returncode == 6  # SlipStream's SecurityError
    assert "is not the pinned one" in done.stderr
    assert tls_fake.requests == []


def test_wrappers_start_light() -> None:
    """The wrappers run with -I -S and import only _socket: their 30 ms budget."""
    source = AGENT.read_text()
    start = source.index('WRAPPER = """')
    wrapper = source[start : source.index('"""\n', start + 15)]
    assert "#!{python} -IS" in wrapper
    assert "import _socket, os, sys\n" in wrapper
    assert wrapper.count("import ") == 1
