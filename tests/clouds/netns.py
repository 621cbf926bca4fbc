"""Real hosts for the `ssh` cloud: network namespaces on a bridge, each running Debian's sshd.

Every host is a network namespace with its own address on a bridge made for the test (the
server listens on the bridge's own address), and its own mount namespace in which a folder
of the test is bound over ``/root``, root's home: hosts do not share a home, and what an
instance leaves on its host can be looked at. They share the rest of the filesystem, the
system's ``python3`` included, so each host's ``apt-get`` is a stand-in (bound over the
real one in its mount namespace) that installs nothing and only checks that a package is
there, as on a prepared image: the hosts have no network, and must not change the
machine's packages. A host may refuse the test's key (it authorizes another), and
:attr:`Network.down_address` is an address on the bridge where nothing answers.

It needs root, ``ip`` (iproute2) and ``/usr/sbin/sshd`` (openssh-server); ``.ci/run``
installs them. Where they are missing :func:`require` fails the test and says why: these
tests never skip.

Example (in a test)::

        network = Network(tmp_path, accepting=3, refusing=1).up()
        try:
            ...  # ssh root@network.hosts[0].address -i network.key
        finally:
            network.down()
        assert network.leftovers() == []
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
APT_GET = "/usr/bin/apt-get"
APT_STAND_IN = r"""#!/bin/sh
# apt-get on a test host: `update` does nothing, `install` checks each package is there.
command=""
skip=""
for arg in "$@"; do
  if [ -n "$skip" ]; then skip=""; continue; fi
  case "$arg" in
    -o|-c) skip=1 ;;
    -*) ;;
    *)
      if [ -z "$command" ]; then command="$arg"; continue; fi
      [ "$command" = install ] || break
      if dpkg-query -W -f='${Status}\n' "$arg" 2>/dev/null | grep -q "install ok installed"; then
        echo "$arg is already the newest version."
      else
        echo "E: Unable to locate package $arg (test host: nothing is installed)" >&2
        exit 100
      fi ;;
  esac
done
case "$command" in
  update|install) exit 0 ;;
  *) echo "E: test host: apt-get $command is not available" >&2; exit 100 ;;
esac
"""
# RFC 2544's range for network tests: nothing real lives there.
SUBNETS = "198.18"
_NETWORKS = itertools.count(1)


def require() -> None:
    """Fail (never skip) the calling test when this machine cannot make the hosts."""
    missing = [tool for tool in ("ip", "ssh-keygen") if shutil.which(tool) is None]
    if not os.path.exists(SSHD):
        missing.append(SSHD)
    if missing:
        pytest.fail(
            f"the ssh cloud's hosts need {', '.join(missing)}: apt-get install iproute2 "
            "openssh-server (.ci/run does)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail(
            "the ssh cloud's hosts are network namespaces, which only root can make: run "
            "these tests as root (CI does)",
            pytrace=False,
        )


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One host: a namespace, its address, the folder that is its ``/root``, its sshd."""

    name: str
    address: str
    home: Path
    authorized_keys: Path
    config: Path
    log: Path
    veth: str
    sshd: subprocess.Popen[bytes] | None = None
    inode: int = 0

    def pids(self) -> set[int]:
        """Every process in the host's network namespace."""
        return {int(p) for p in ip("netns", "pids", self.name, check=False).split()}

    def processes(self) -> dict[int, str]:
        """pid → command line of what runs on the host besides its sshd listener."""
        found = {}
        for pid in self.pids() - ({self.sshd.pid} if self.sshd else set()):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found[pid] = cmdline.decode("utf-8", "replace").strip()
        return found

    def settle(self, seconds: float = 10) -> dict[int, str]:
        """:meth:`processes`, once sessions that are closing have gone (or ``seconds``)."""
        deadline = time.monotonic() + seconds
        while True:
            left = self.processes()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


@dataclass
class Network:
    """A bridge, ``accepting`` hosts that take :attr:`key` and ``refusing`` ones that do not."""

    base: Path
    accepting: int = 3
    refusing: int = 0
    prefix: str = field(default_factory=lambda: f"sst{os.getpid() % 10000}n{next(_NETWORKS)}")
    hosts: list[Host] = field(default_factory=list)
    subnet: str = ""

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        """The bridge's address: where the hosts reach the server."""
        return f"{self.subnet}.1"

    @property
    def down_address(self) -> str:
        """An address on the bridge that no host has."""
        return f"{self.subnet}.200"

    @property
    def key(self) -> Path:
        """The private key the accepting hosts authorize."""
        return self.base / "id_ed25519"

    def up(self) -> Network:
        """Make the keys, the bridge and the hosts, and start every sshd; on any failure
        what was made is removed and the test fails saying why."""
        require()
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._keys()
            self.subnet = free_subnet()
            ip("link", "add", self.bridge, "type", "bridge")
            ip("link", "set", self.bridge, "up")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            for i in range(1, self.accepting + self.refusing + 1):
                self.hosts.append(self._host(i, refused=i > self.accepting))
            for host in self.hosts:
                self._wait_listening(host)
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            self.down()
            pytest.fail(f"cannot make the ssh cloud's hosts: {err}", pytrace=False)
        return self

    def _keys(self) -> None:
        for name in ("id_ed25519", "stranger", "ssh_host_ed25519_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"test-{name}",
                 "-f", str(self.base / name)],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
        stand_in = self.base / "apt-get"
        stand_in.write_text(APT_STAND_IN)
        stand_in.chmod(0o755)
        # sshd refuses to start when privilege separation's folder is missing; Debian's
        # package makes it at boot, and it is shared by every sshd of the machine.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def _host(self, i: int, refused: bool) -> Host:
        name = f"{self.prefix}h{i}"
        folder = self.base / name
        (folder / "root").mkdir(parents=True, mode=0o700)
        host = Host(
            name,
            f"{self.subnet}.{10 + i}",
            folder / "root",
            folder / "authorized_keys",
            folder / "sshd_config",
            folder / "sshd.log",
            f"{self.prefix}v{i}",
        )
        key = self.base / ("stranger.pub" if refused else "id_ed25519.pub")
        host.authorized_keys.write_bytes(key.read_bytes())
        host.config.write_text(
            f"ListenAddress {host.address}:22\n"
            f"HostKey {self.base / 'ssh_host_ed25519_key'}\n"
            f"AuthorizedKeysFile {host.authorized_keys}\n"
            "PidFile none\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # The keys live under the test's /tmp folder, which StrictModes would refuse
            # (/tmp is world-writable).
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )
        ip("netns", "add", name)
        host.inode = os.stat(f"/run/netns/{name}").st_ino
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("link", "set", host.veth, "master", self.bridge, "up")
        ip("-n", name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "lo", "up")
        # `ip netns exec` gives the command its own mount namespace: the bind stays inside.
        with open(host.log, "ab") as log:
            host.sshd = subprocess.Popen(
                ["ip", "netns", "exec", name, "sh", "-c",
                 'mount --bind "$1" /root && mount --bind "$2" "$3" && exec "$4" -D -e -f "$5"',
                 "sh", str(host.home), str(self.base / "apt-get"), APT_GET, SSHD,
                 str(host.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )  # fmt: skip
        return host

    def _wait_listening(self, host: Host, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while True:
            assert host.sshd is not None
            if host.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {host.address} exited: {host.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection((host.address, 22), 1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {host.address} does not listen")
            time.sleep(0.1)

    def down(self) -> None:
        """Stop every process on the hosts, then remove the namespaces and the bridge."""
        for host in self.hosts:
            if host.sshd is not None and host.sshd.poll() is None:
                host.sshd.terminate()
                try:
                    host.sshd.wait(10)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
                    host.sshd.wait(10)
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for host in self.hosts:
            deadline = time.monotonic() + 10
            while host.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            # Deleting one end of a veth pair deletes both at once; a namespace's own
            # interfaces would otherwise go later, when the kernel gets round to it.
            ip("link", "del", host.veth, check=False)
            ip("netns", "del", host.name, check=False)
        ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """What the network left on the machine: namespaces, interfaces, processes."""
        found = [f"namespace {n}" for n in ip("netns", "list").split() if n.startswith(self.prefix)]
        links = re.findall(r"^\d+: ([^:@]+)", ip("-o", "link"), re.MULTILINE)
        found += [f"interface {link}" for link in links if link.startswith(self.prefix)]
        inodes = {f"net:[{h.inode}]" for h in self.hosts}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "net") in inodes:
                        found.append(f"process {entry.name} in a host's namespace")
        found += [
            f"sshd {h.sshd.pid}" for h in self.hosts if h.sshd is not None and h.sshd.poll() is None
        ]
        return found


def free_subnet() -> str:
    """A ``198.18.N`` /24 that no interface of this machine uses (tests may run at once)."""
    used = set(re.findall(rf"inet {re.escape(SUBNETS)}\.(\d+)\.", ip("-4", "-o", "addr")))
    start = os.getpid() % 250
    for n in range(250):
        candidate = str((start + n) % 250 + 1)
        if candidate not in used:
            return f"{SUBNETS}.{candidate}"
    raise RuntimeError(f"every {SUBNETS}.N/24 is in use")
