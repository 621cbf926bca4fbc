#!/usr/bin/env python3
"""SlipStream on-machine agent: the daemon and the ss-* commands, in one file.

This file is copied to every machine and run there with the system ``python3``
(3.8 or newer). It uses the standard library only and imports nothing from the
project. It is a multi-call program, chosen by ``argv[0]``'s basename or by the
first argument:

    slipstream_agent.py run  [--env-file F]          the daemon
    slipstream_agent.py stop [--env-file F] [--grace S]
    ss-get [--timeout S] [--noblock] [--ignore-abort] KEY
    ss-set [--ignore-abort] KEY VALUE
    ss-display [--ignore-abort] MESSAGE
    ss-abort [--cancel] [REASON]
    ss-random [-s N] [KEY]
    ss-get-all [--timeout S] [--noblock] [--ignore-abort] [--value [VALUE]] NODE KEY

The ``ss-*`` commands behave as SlipStream's client did (slipstream/SlipStreamClient,
``client/src/main/python/ss-*.py``), exit codes included: 0 success, 1 failure, 2 usage
error, 4 server unreachable, 6 server not trusted, 7 request refused, 8 run aborted,
9 timeout. Options that
client accepted are accepted, or refused with a message saying what to do instead.

Configuration comes from the environment (or ``KEY=VALUE`` lines of ``--env-file``):
``SLIPSTREAM_SERVER``, ``SLIPSTREAM_SERVER_FILE``, ``SLIPSTREAM_RUN_ID``,
``SLIPSTREAM_INSTANCE``, ``SLIPSTREAM_TOKEN``, ``SLIPSTREAM_WORKDIR``,
``SLIPSTREAM_BIND_HOST``; ``SLIPSTREAM_RETRY_SECONDS`` bounds how long one request
is retried while the server is unreachable or answers 5xx (default 300).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

# Python 3.8+ only: annotations are strings (see the __future__ import), so builtin
# generics in annotations are fine, but never subscript a builtin type at run time.

API_PREFIX = "/agent/v1/runs/"
DEFAULT_RETRY_SECONDS = 300.0
#: The server's cap on one report archive (webhooks/agent_api.py MAX_REPORT_BYTES).
MAX_REPORT_BYTES = 50 * 1024 * 1024
#: How long ``reporting`` may run after a failure, when the run is over anyway.
REPORTING_LIMIT_S = 30.0
MAX_WAIT_CHUNK = 30  # seconds per long-poll request
STOP_GRACE_SECONDS = 10.0
RANDOM_ALPHABET = string.ascii_letters + string.digits

#: Run states, in the order a run goes through them (Aborted/Cancelled are off to the side).
STATE_ORDER = (
    "Initializing",
    "Provisioning",
    "Executing",
    "SendingReports",
    "Ready",
    "Finalizing",
    "Done",
)
#: The run is over for the agent: it stops waiting and exits.
OVER_STATES = frozenset({"Finalizing", "Done", "Aborted", "Cancelled"})
#: The states in which the agent has work to do, in order.
WORK_STATES = ("Executing", "SendingReports")
#: SlipStream's names of the scale actions (``$SLIPSTREAM_SCALING_ACTION``).
SCALE_CREATION = "vm_create"
SCALE_REMOVAL = "vm_remove"
#: Commands scripts find on PATH (wrappers in <workdir>/bin).
SS_COMMANDS = ("ss-get", "ss-set", "ss-display", "ss-abort", "ss-random", "ss-get-all")
#: Settings that stay with the agent: scripts reach the server only through it.
PRIVATE_ENV = frozenset(
    {
        "SLIPSTREAM_TOKEN",
        "SLIPSTREAM_SERVER",
        "SLIPSTREAM_SERVER_FILE",
        "SLIPSTREAM_SERVER_FINGERPRINT",
    }
)

USAGES = {
    "ss-get": "ss-get [--timeout S] [--noblock] [--ignore-abort] KEY",
    "ss-set": "ss-set [--ignore-abort] KEY VALUE",
    "ss-display": "ss-display [--ignore-abort] MESSAGE",
    "ss-abort": "ss-abort [--cancel] [REASON]",
    "ss-random": "ss-random [-s|--size N] [KEY]",
    "ss-get-all": (
        "ss-get-all [--timeout S] [--noblock] [--ignore-abort] [--value [VALUE]] NODE KEY"
    ),
    "run": "slipstream_agent.py run [--env-file F]",
    "stop": "slipstream_agent.py stop [--env-file F] [--grace S]",
}

LOG = logging.getLogger("slipstream_agent")


# --------------------------------------------------------------------------- errors


class AgentError(Exception):
    """A failure reported as ``<prog>: <message>`` on stderr, exit status ``code``."""

    code = 1


class Refused(AgentError):
    """The server refused the request (4xx): SlipStream's ClientError, exit status 7."""

    code = 7

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(AgentError):
    """No server answered for as long as we retried: SlipStream's NetworkError, status 4."""

    code = 4


class Untrusted(Unreachable):
    """Only servers we may not trust answered (a pinned certificate or a private socket
    did not match): SlipStream's SecurityError, exit status 6."""

    code = 6


class AbortedError(AgentError):
    """The run's abort flag is up (the server answered 409): fail fast, exit status 8."""

    code = 8

    def __init__(self, abort_message: str) -> None:
        super().__init__(f"run aborted: {abort_message}")
        self.abort_message = abort_message


class TokenRefused(Refused):
    """The server no longer knows this instance's token: its run was destroyed."""


class WaitTimedOut(AgentError):
    """A blocking get ran out of time: SlipStream's TimeoutException, exit status 9, with
    its message (``Client.getRuntimeParameter``), printed as its commands printed it."""

    code = 9

    def __init__(self, timeout: float, key: str) -> None:
        super().__init__(
            f"Exceeded timeout limit of {format_number(timeout)} waiting for key '{key}' to be set"
        )


class UsageError(Exception):
    """Bad command line: usage on stderr, exit status 2."""


class HelpRequested(Exception):
    """``-h``/``--help``: usage on stdout, exit status 0."""


class StepFailed(Exception):
    """A step of the recipe failed; the daemon aborts the run with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- command line


#: Options SlipStream's client accepted that mean nothing here, and what to do instead.
_LOGIN = (
    "SlipStream's login options are not needed: this machine's agent authenticates it to "
    "its server; remove them"
)
FOREIGN_OPTIONS = {
    "--endpoint": (
        "--endpoint (the SlipStream server's URL) is not needed: this machine's agent knows "
        "its server; remove it"
    ),
    "--username": _LOGIN,
    "-u": _LOGIN,
    "--password": _LOGIN,
    "-p": _LOGIN,
    "--cookie": _LOGIN,
}


def parse_options(
    argv: Sequence[str], spec: Mapping[str, bool], aliases: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Split argv into options and positional arguments, the way SlipStream's optparse did.

    ``spec`` maps each long option to whether it takes a value; ``aliases`` maps short
    options to long ones (``-s`` → ``--size``). ``--opt V``, ``--opt=V``, ``-s V``,
    ``-sV`` and unambiguous prefixes (``--time`` for ``--timeout``) are accepted, options
    may come between arguments, ``--`` ends options. SlipStream options that have no use
    here are refused with a message saying what to do instead.

    >>> parse_options(["--time=5", "-v", "k"], {"--timeout": True, "--verbose": False},
    ...               {"-v": "--verbose"})
    ({'--timeout': '5', '--verbose': True}, ['k'])
    """
    shorts = dict(aliases or {})
    options: dict[str, Any] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            args.extend(argv[i:])
            break
        if token in ("-h", "--help"):
            raise HelpRequested()
        if not token.startswith("-") or token == "-":
            args.append(token)
            continue
        pending: list[tuple[str, str | None]] = []
        if token.startswith("--"):
            name, has_inline, text = token.partition("=")
            pending.append((_long_name(name, spec), text if has_inline else None))
        else:
            rest = token[1:]
            while rest:
                short, rest = "-" + rest[0], rest[1:]
                if short in FOREIGN_OPTIONS and short not in shorts:
                    raise UsageError(FOREIGN_OPTIONS[short])
                if short not in shorts:
                    raise UsageError(f"unknown option {short}")
                name = shorts[short]
                if spec[name]:
                    pending.append((name, rest or None))
                    break
                pending.append((name, None))
        for name, inline in pending:
            if spec[name]:
                if inline is not None:
                    options[name] = inline
                elif i < len(argv):
                    options[name] = argv[i]
                    i += 1
                else:
                    raise UsageError(f"option {name} needs a value")
            elif inline is not None and token.startswith("--"):
                raise UsageError(f"option {name} takes no value")
            else:
                options[name] = True
    return options, args


def _long_name(name: str, spec: Mapping[str, bool]) -> str:
    """The option ``name`` stands for: itself, or the one long option it is a prefix of."""
    if name in spec:
        return name
    if name in FOREIGN_OPTIONS:
        raise UsageError(FOREIGN_OPTIONS[name])
    known = [n for n in (*spec, *FOREIGN_OPTIONS) if n.startswith("--")]
    matches = sorted({n for n in known if n.startswith(name)})
    if len(matches) == 1:
        return _long_name(matches[0], spec)
    if matches:
        raise UsageError(f"option {name} is ambiguous ({', '.join(matches)})")
    raise UsageError(f"unknown option {name}")


def parse_seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name} expects a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name} expects a number of seconds >= 0, not {text!r}")
    return value


def format_number(value: float) -> str:
    """``60`` for 60.0, ``1.5`` for 1.5."""
    return str(int(value)) if value == int(value) else f"{value:g}"


# --------------------------------------------------------------------------- configuration


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines, ``#`` comments and a leading ``export`` allowed."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise AgentError(f"cannot read env file {path}: {err.strerror or err}") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AgentError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_file(path: str | None) -> None:
    """Merge an env file into os.environ (the file wins), so scripts inherit it too."""
    if path:
        os.environ.update(read_env_file(path))


class Config:
    """The agent's settings, read from the environment. The token is never shown."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.server = env.get("SLIPSTREAM_SERVER", "").strip()
        self.server_file = env.get("SLIPSTREAM_SERVER_FILE", "").strip()
        self.run_id = env.get("SLIPSTREAM_RUN_ID", "").strip()
        self.instance = env.get("SLIPSTREAM_INSTANCE", "").strip()
        self.token = env.get("SLIPSTREAM_TOKEN", "").strip()
        self.workdir = os.path.abspath(env.get("SLIPSTREAM_WORKDIR", "").strip() or os.getcwd())
        self.bind_host = env.get("SLIPSTREAM_BIND_HOST", "").strip()
        self.fingerprint = env.get("SLIPSTREAM_SERVER_FINGERPRINT", "").strip()
        retry = env.get("SLIPSTREAM_RETRY_SECONDS", "").strip()
        try:
            self.retry_seconds = float(retry) if retry else DEFAULT_RETRY_SECONDS
        except ValueError:
            self.retry_seconds = DEFAULT_RETRY_SECONDS

    def __repr__(self) -> str:
        return f"Config(run_id={self.run_id!r}, instance={self.instance!r}, token=<hidden>)"

    def check(self) -> None:
        missing = [
            name
            for name, value in (
                ("SLIPSTREAM_SERVER (or SLIPSTREAM_SERVER_FILE)", self.server or self.server_file),
                ("SLIPSTREAM_RUN_ID", self.run_id),
                ("SLIPSTREAM_TOKEN", self.token),
            )
            if not value
        ]
        if missing:
            raise AgentError(f"not configured: {', '.join(missing)} not set")

    def exported(self) -> dict[str, str]:
        """The SLIPSTREAM_* variables scripts get: never the token nor the server, since
        their ``ss-*`` commands go through the agent's own socket."""
        env = {
            "SLIPSTREAM_RUN_ID": self.run_id,
            "SLIPSTREAM_INSTANCE": self.instance,
            "SLIPSTREAM_WORKDIR": self.workdir,
        }
        if self.bind_host:
            env["SLIPSTREAM_BIND_HOST"] = self.bind_host
        return env


# --------------------------------------------------------------------------- HTTP client


class Response:
    def __init__(self, status: int, raw: bytes) -> None:
        self.status = status
        self.raw = raw
        self.body: dict[str, Any] = {}
        if raw:
            try:
                doc = json.loads(raw.decode("utf-8"))
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                self.body = doc
            else:
                self.body = {"error": raw.decode("utf-8", "replace").strip()[:300]}

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        return str(self.body.get("error") or f"HTTP {self.status}")


def _describe(err: BaseException) -> str:
    """A connection error in words: the reason of an OSError, else its type and text."""
    if isinstance(err, OSError) and err.strerror:
        return str(err.strerror)
    return f"{type(err).__name__}: {err}"


class PinMismatch(OSError):
    """The server's certificate is not the one this agent was told to trust."""


def check_private_path(path: str) -> None:
    """Refuse a Unix socket that someone other than us (or root) could have put there.

    Every folder from the socket's up to ``/`` must belong to us or root and must not be
    writable by others, unless it is sticky (``/tmp``): then only its owner could have
    made or replaced what is inside (the same rule as OpenSSH's for its key files).
    """
    uid = os.getuid()
    folder = os.path.dirname(os.path.abspath(path))
    info = os.lstat(path)
    if info.st_uid not in (uid, 0):
        raise PinMismatch(f"server socket {path} belongs to uid {info.st_uid}")
    while True:
        info = os.stat(folder)
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if info.st_uid not in (uid, 0) or (info.st_mode & 0o022 and not sticky):
            raise PinMismatch(f"server socket {path}: folder {folder} is not private")
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def connect_unix(sock: socket.socket, path: str) -> None:
    """Connect to a Unix socket, even when its path is longer than the kernel's 107 bytes."""
    if len(os.fsencode(path)) < 100:
        sock.connect(path)
        return
    # Linux resolves /proc/self/fd/N as the folder N is open on: a short path to a deep file.
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        sock.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
    finally:
        os.close(folder)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: how agents on the ``local`` cloud reach their server."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        check_private_path(self.unix_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            connect_unix(sock, self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def pinned_connection(host: str, port: int | None, pin: str, timeout: float) -> Any:
    """HTTPS that trusts exactly one certificate (``sha256:<hex>`` of its DER form), checked
    before anything, the token included, is sent; with no pin, the system's CAs."""
    import hashlib
    import ssl

    if not pin:
        return http.client.HTTPSConnection(host, port, timeout=timeout)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin below is the whole trust decision

    class Pinned(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            der = self.sock.getpeercert(binary_form=True) or b""
            seen = "sha256:" + hashlib.sha256(der).hexdigest()
            if seen != pin.lower():
                self.sock.close()
                self.sock = None
                raise PinMismatch(f"server certificate {seen[:19]}… is not the pinned one")

    return Pinned(host, port, timeout=timeout, context=context)


class Client:
    """The agent API client: bearer token, JSON bodies, kept-alive connections, retries on
    connection errors and 5xx.

    Connections are pooled: the daemon's long-polls and its scripts' requests reuse the
    same one or two connections instead of opening one per request. The server is named
    by ``unix:/path`` (the local cloud), ``https://host:port`` (pinned with
    ``SLIPSTREAM_SERVER_FINGERPRINT``) or ``http://host:port`` (tests, trusted networks).
    """

    def __init__(
        self,
        config: Config,
        note: Callable[[str], None] | None = None,
        retry_for: float | None = -1.0,
    ) -> None:
        self.config = config
        self.note = note or (lambda message: None)
        # How long a request is retried (None: as long as it takes; negative: the config's).
        if retry_for is not None and retry_for < 0:
            retry_for = config.retry_seconds
        self.retry_for = retry_for
        self._idle: list[tuple[str, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def bounded(self) -> Client:
        """The same connections, with the configured retry bound (for scripts' commands)."""
        view = Client.__new__(Client)
        view.__dict__.update(self.__dict__)
        view.retry_for = self.config.retry_seconds
        return view

    def base_url(self) -> str:
        server = self.config.server
        if self.config.server_file:
            try:
                with open(self.config.server_file, encoding="utf-8") as handle:
                    text = handle.read().strip()
                if text:
                    server = text
            except OSError:
                pass
        if not server:
            raise AgentError("no server address (SLIPSTREAM_SERVER / SLIPSTREAM_SERVER_FILE)")
        return server.rstrip("/")

    def _connect(self, base: str, timeout: float) -> http.client.HTTPConnection:
        if base.startswith("unix:"):
            return UnixConnection(base[len("unix:") :], timeout)
        parts = urllib.parse.urlsplit(base)
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = pinned_connection(
                parts.hostname or "", parts.port, self.config.fingerprint, timeout
            )
            return connection
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        raise AgentError(f"unsupported server address {base!r}")

    def _take(self, base: str, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                where, connection = self._idle.pop()
                if where == base:
                    if connection.sock is not None:
                        connection.sock.settimeout(timeout)
                    connection.timeout = timeout
                    return connection, True
                connection.close()
        return self._connect(base, timeout), False

    def _give_back(self, base: str, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append((base, connection))

    def close(self) -> None:
        with self._lock:
            for _, connection in self._idle:
                connection.close()
            self._idle.clear()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 60.0,
    ) -> Response:
        """One API call; returns any response below 500, retries the rest with backoff
        for ``self.retry_for`` seconds (the daemon: for as long as its run lives)."""
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {self.config.token}",
            "Accept": "application/json",
            "User-Agent": "slipstream-agent",
        }
        if data is not None:
            headers["Content-Type"] = content_type
        run = urllib.parse.quote(self.config.run_id, safe="")
        give_up = None if self.retry_for is None else time.monotonic() + self.retry_for
        delay = 0.25
        untrusted = False
        while True:
            base = self.base_url()
            connection, reused = self._take(base, timeout)
            try:
                connection.request(method, API_PREFIX + run + path, body=data, headers=headers)
                answer = connection.getresponse()
                raw = answer.read()
                if answer.will_close:
                    connection.close()
                else:
                    self._give_back(base, connection)
                if answer.status < 500:
                    return Response(answer.status, raw)
                problem, untrusted = f"HTTP {answer.status}", False
            except (OSError, http.client.HTTPException) as err:
                connection.close()
                if reused and not isinstance(err, (PinMismatch, socket.timeout)):
                    continue  # the server closed an idle kept-alive connection: reconnect
                untrusted = isinstance(err, PinMismatch)
                problem = str(err) if untrusted else _describe(err)
            if give_up is not None and time.monotonic() + delay > give_up:
                failure = Untrusted if untrusted else Unreachable
                raise failure(f"cannot reach the server at {base}: {problem}")
            self.note(f"{method} {path}: {problem}; retrying in {delay:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def check(response: Response, what: str) -> dict[str, Any]:
        """The body of a 2xx answer; AbortedError on 409, Refused on other 4xx."""
        if response.ok:
            return response.body
        if response.status == 409:
            raise AbortedError(str(response.body.get("abort") or response.error))
        if response.status == 401:
            raise TokenRefused(f"{what}: {response.error} (HTTP 401)", 401)
        raise Refused(f"{what}: {response.error} (HTTP {response.status})", response.status)

    # -- the API, one method per endpoint

    def get_param(self, key: str, wait: int, ignore_abort: bool = False) -> str | None:
        """The value, or None when still unset after ``wait`` seconds (408)."""
        path = f"/params/{urllib.parse.quote(key, safe='')}?wait={wait}"
        if ignore_abort:
            path += "&ignore_abort=true"
        response = self.request("GET", path, timeout=wait + 30)
        if response.status == 408:
            return None
        value = self.check(response, key).get("value")
        return "" if value is None else str(value)

    def set_param(self, key: str, value: str, ignore_abort: bool = False) -> None:
        path = f"/params/{urllib.parse.quote(key, safe='')}"
        if ignore_abort:
            path += "?ignore_abort=true"
        self.check(self.request("PUT", path, body={"value": value}), key)

    def get_all(
        self, node: str, key: str, wait: int, ignore_abort: bool = False
    ) -> tuple[list[tuple[str, str | None]], bool]:
        """``(key, value or None)`` per instance of ``node``, and whether all were set."""
        quoted_node = urllib.parse.quote(node, safe="")
        quoted_key = urllib.parse.quote(key, safe="")
        path = f"/nodes/{quoted_node}/params/{quoted_key}?wait={wait}"
        if ignore_abort:
            path += "&ignore_abort=true"
        response = self.request("GET", path, timeout=wait + 30)
        body = response.body if response.status == 408 else self.check(response, f"{node}:{key}")
        values = body.get("values") or []
        names = body.get("keys") or []
        found = [
            (
                str(names[i]) if i < len(names) else f"{node}.{i + 1}:{key}",
                None if value is None else str(value),
            )
            for i, value in enumerate(values)
        ]
        return found, response.status != 408

    def abort(self, message: str, cancel: bool = False) -> None:
        response = self.request("POST", "/abort", body={"message": message, "cancel": cancel})
        if response.status == 409:  # already aborted: the first message wins anyway
            return
        self.check(response, "abort")

    def state(self, wait: int = 0, after: str | None = None) -> dict[str, Any]:
        query = {"wait": str(wait)}
        if after:
            query["after"] = after
        path = "/state?" + urllib.parse.urlencode(query)
        return self.check(self.request("GET", path, timeout=wait + 30), "state")

    def recipe(self) -> dict[str, Any]:
        return self.check(self.request("GET", "/recipe"), "recipe")

    def vote(self, state: str) -> None:
        self.check(self.request("POST", "/votes", body={"state": state}), f"vote {state}")

    def report(self, archive: bytes) -> None:
        response = self.request(
            "POST", "/reports", data=archive, content_type="application/gzip", timeout=300
        )
        self.check(response, "report upload")

    def event(self, message: str, level: str = "info") -> None:
        response = self.request("POST", "/events", body={"message": message, "level": level})
        self.check(response, "event")


# --------------------------------------------------------------------------- ss-* commands


class Context:
    """Where a command writes, what it reads and which client it uses.

    Run directly (``slipstream_agent.py ss-get …``) a command talks to the server itself
    and writes to this process's streams; forwarded by the ``ss-*`` wrappers to the
    daemon, it uses the daemon's kept-alive client and its output is sent back.
    """

    def __init__(self, client: Client | None = None, stdin: bytes | None = None) -> None:
        self._client = client
        self._stdin = stdin
        self.buffered = client is not None
        self.out = bytearray()
        self.err = bytearray()

    def client(self) -> Client:
        if self._client is None:
            config = Config(os.environ)
            config.check()
            self._client = Client(config)
        return self._client

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        if self.buffered:
            self.out += data
            return
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def error(self, text: str) -> None:
        if self.buffered:
            self.err += text.encode("utf-8", "surrogateescape")
        else:
            sys.stderr.write(text)

    def stdin(self) -> str:
        data = sys.stdin.buffer.read(65537) if self._stdin is None else self._stdin
        return data.decode("utf-8", "surrogateescape")


#: SlipStream's ss-get and ss-get-all waited this long unless told otherwise (``--timeout``).
DEFAULT_GET_TIMEOUT = 60.0
NODE_KEYS = ("multiplicity", "ids")
#: Options of every ss-* command (SlipStream's VMCommandBase added --run and --endpoint).
COMMON_SPEC = {"--verbose": False, "--run": True}
COMMON_ALIASES = {"-v": "--verbose"}


def qualify(instance: str, key: str) -> str:
    """The full key SlipStream's ``Client._qualifyKey`` made of ``key`` (the server does
    the same; the agent needs it only to name the key in messages).

    >>> qualify("web.2", "db_url"), qualify("web.2", "db:url"), qualify("web.2", "ids")
    ('web.2:db_url', 'db.1:url', 'web:ids')
    """
    if ":" not in key:
        if not instance:
            return key
        return f"{instance.partition('.')[0]}:{key}" if key in NODE_KEYS else f"{instance}:{key}"
    head, _, name = key.partition(":")
    if head == "ss" or "." in head or name in NODE_KEYS:
        return key
    return f"{head}.1:{name}"


def command_options(
    argv: Sequence[str],
    ctx: Context,
    spec: Mapping[str, bool],
    aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Options and arguments of an ss-* command, with SlipStream's common options.

    ``--run UUID`` is accepted when it names this machine's own run (``$SLIPSTREAM_DIID``):
    a script can reach no other.
    """
    options, args = parse_options(
        argv, {**COMMON_SPEC, **spec}, {**COMMON_ALIASES, **(aliases or {})}
    )
    if "--run" in options:
        own = ctx.client().config.run_id
        if options["--run"] != own:
            raise UsageError(
                f"--run {options['--run']}: a script can reach only its own run ({own}); "
                "remove --run"
            )
    return options, args


def get_timeout(options: Mapping[str, Any]) -> float | None:
    """The wait bound of a blocking get: SlipStream's 60 s by default, none for 0."""
    text = options.get("--timeout")
    timeout = DEFAULT_GET_TIMEOUT if text is None else parse_seconds("--timeout", text)
    return timeout or None


def wait_chunk(deadline: float | None) -> int:
    """Seconds to ask the server to hold the next long-poll request."""
    if deadline is None:
        return MAX_WAIT_CHUNK
    remaining = deadline - time.monotonic()
    return max(0, min(MAX_WAIT_CHUNK, math.ceil(remaining)))


def pace(started: float, wait: int, deadline: float | None) -> None:
    """Guard against a server that answers a long poll at once: never spin."""
    if time.monotonic() - started < wait / 2:
        pause = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        time.sleep(pause)


GET_SPEC = {"--timeout": True, "--noblock": False, "--ignore-abort": False}


def cmd_get(argv: Sequence[str], ctx: Context) -> int:
    """``ss-get KEY``: the value once set; an empty line with ``--noblock`` if unset; after
    the timeout (60 s by default, ``--timeout 0`` for none) exit status 9 and SlipStream's
    message."""
    options, args = command_options(argv, ctx, GET_SPEC)
    if len(args) != 1:
        raise UsageError("expects exactly one KEY")
    key = args[0]
    timeout = get_timeout(options)
    noblock = bool(options.get("--noblock"))
    ignore_abort = bool(options.get("--ignore-abort"))
    client = ctx.client()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = 0 if noblock else wait_chunk(deadline)
        started = time.monotonic()
        value = client.get_param(key, wait, ignore_abort)
        if value is not None or noblock:
            ctx.write((value or "") + "\n")
            return 0
        if deadline is not None and time.monotonic() >= deadline:
            assert timeout is not None
            raise WaitTimedOut(timeout, qualify(client.config.instance, key))
        pace(started, wait, deadline)


def cmd_get_all(argv: Sequence[str], ctx: Context) -> int:
    """``ss-get-all NODE KEY``: ``node.i:key value`` per instance, as SlipStream printed
    them; an instance that has not set KEY by the timeout prints an empty value and
    SlipStream's timeout message on stderr. ``--value VALUE`` checks every value equals
    VALUE (exit status 1 otherwise, as SlipStream's did); ``--value`` alone prints the values
    only, one per line."""
    spec = {**GET_SPEC, "--value": False}
    # SlipStream's --value took a VALUE; without one (only NODE KEY besides it) it asks
    # for the values only.
    try:
        _, positional = parse_options(argv, {**COMMON_SPEC, **spec}, COMMON_ALIASES)
        spec["--value"] = len(positional) == 3
    except UsageError:  # --value=VALUE, or a mistake the real parse below reports
        spec["--value"] = True
    options, args = command_options(argv, ctx, spec)
    if len(args) != 2:
        raise UsageError("expects NODE and KEY")
    node, key = args
    timeout = get_timeout(options)
    noblock = bool(options.get("--noblock"))
    ignore_abort = bool(options.get("--ignore-abort"))
    client = ctx.client()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = 0 if noblock else wait_chunk(deadline)
        started = time.monotonic()
        found, complete = client.get_all(node, key, wait, ignore_abort)
        if complete or noblock or (deadline is not None and time.monotonic() >= deadline):
            break
        pace(started, wait, deadline)
    if not noblock and timeout is not None:
        for name, value in found:
            if value is None:
                ctx.error(str(WaitTimedOut(timeout, name)) + "\n")
    lines = "".join(f"{name} {value or ''}\n" for name, value in found)
    expected = options.get("--value")
    if expected is True:
        ctx.write("".join(f"{value or ''}\n" for _, value in found))
    elif isinstance(expected, str):
        if any(value != expected for _, value in found):
            ctx.error(f"RTP value on some components not equal to the expected value: {expected}\n")
            ctx.write(lines)
            return 1
    else:
        ctx.write(lines)
    return 0


def cmd_set(argv: Sequence[str], ctx: Context) -> int:
    """``ss-set KEY VALUE``; ``ss-set KEY -`` reads the value from stdin."""
    options, args = command_options(argv, ctx, {"--ignore-abort": False})
    if len(args) != 2:
        raise UsageError("expects KEY and VALUE")
    value = args[1]
    if value == "-":
        # The value from stdin keeps secrets out of argv (/proc/*/cmdline is world-readable).
        value = ctx.stdin()
        value = value[:-1] if value.endswith("\n") else value
    ctx.client().set_param(args[0], value, bool(options.get("--ignore-abort")))
    return 0


def cmd_display(argv: Sequence[str], ctx: Context) -> int:
    options, args = command_options(argv, ctx, {"--ignore-abort": False})
    if not args:
        raise UsageError("expects a MESSAGE")
    ctx.client().set_param("statecustom", " ".join(args), bool(options.get("--ignore-abort")))
    return 0


def cmd_abort(argv: Sequence[str], ctx: Context) -> int:
    """``ss-abort [REASON]`` raises the run's abort flag (``(unspecified)`` without a
    reason, as SlipStream's); ``--cancel REASON`` ends the run as Cancelled."""
    options, args = command_options(argv, ctx, {"--cancel": False})
    cancel = bool(options.get("--cancel"))
    if cancel and not args:
        raise UsageError(
            "--cancel without a reason cleared the abort flag in SlipStream; here an abort is "
            "final (the run drains, then keep_running decides). To end the run as Cancelled, "
            "give a reason: ss-abort --cancel REASON"
        )
    ctx.client().abort(" ".join(args) or "(unspecified)", cancel=cancel)
    return 0


def cmd_random(argv: Sequence[str], ctx: Context) -> int:
    options, args = command_options(argv, ctx, {"--size": True}, {"-s": "--size"})
    if len(args) > 1:
        raise UsageError("expects at most one KEY")
    size = 12
    if "--size" in options:
        try:
            size = int(options["--size"])
        except ValueError:
            raise UsageError(f"--size expects a whole number, not {options['--size']!r}") from None
        if not 1 <= size <= 4096:
            raise UsageError("--size must be between 1 and 4096")
    value = "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(size))
    if args:
        ctx.client().set_param(args[0], value)
    ctx.write(value + "\n")
    return 0


# --------------------------------------------------------------------------- scripts


def log_line(stream: str, line: bytes) -> bytes:
    """A script's output line as its log keeps it: when, which stream, what.

    >>> log_line("err", b"boom\\n")[23:]
    b' err| boom\\n'
    """
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    return f"{stamp} {stream}| ".encode() + (line if line.endswith(b"\n") else line + b"\n")


def is_trace(text: str) -> bool:
    """A ``sh -x`` trace line (``+ cmd``, ``++ cmd`` in nested substitutions)."""
    return text.startswith("+")


class ScriptRun:
    """One process whose stdout and stderr are copied, line by line and timestamped, into
    a log file; it remembers the last meaningful line for the abort message.

    The copy runs in threads that outlive the process if a background child keeps the
    pipes open (``server &`` in a deployment script): the agent does not wait for it.
    The log file is handed over: it is closed once both pipes are drained.
    """

    def __init__(self, argv: list[str], cwd: str, env: Mapping[str, str], log: IO[bytes]):
        self.log = log
        self.lock = threading.Lock()
        self.last_stderr = ""
        self.last_trace = ""
        self.last_stdout = ""
        self.open_pumps = 2  # the log is closed when both pipes are drained
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, False), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, True), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _pump(self, stream: IO[bytes], is_stderr: bool) -> None:
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").strip()
            with self.lock:
                if text:
                    if not is_stderr:
                        self.last_stdout = text
                    elif is_trace(text):
                        self.last_trace = text
                    else:
                        self.last_stderr = text
                try:
                    self.log.write(log_line("err" if is_stderr else "out", line))
                    self.log.flush()
                except (OSError, ValueError):
                    pass
        stream.close()
        with self.lock:
            self.open_pumps -= 1
            if self.open_pumps == 0:
                self.log.close()

    def wait(self, limit: float | None = None) -> int | None:
        """The exit status; None when ``limit`` seconds passed first (the process is
        killed; a child it left in the background is not)."""
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        for thread in self.threads:
            thread.join(timeout=2.0)
        return code

    def last_line(self) -> str:
        """The last stderr line that is not a ``sh -x`` trace, else the last stdout line,
        else the last trace line."""
        with self.lock:
            return self.last_stderr or self.last_stdout or self.last_trace or "(no output)"


# --------------------------------------------------------------------------- the agent's socket

#: The ss-* commands scripts find on PATH: a few lines of Python started with -I -S (no
#: site, no heavy import), forwarding argv (and stdin for ``ss-set KEY -``) to the daemon
#: over its Unix socket and printing its answer. Python 3.8 compatible, like this file.
WRAPPER = """#!{python} -IS
# {command}: a SlipStream command, forwarded to this machine's agent (written by it).
import _socket, os, sys

SOCKET = {socket!r}


def main():
    args = [os.fsencode(a) for a in [os.path.basename(sys.argv[0])] + sys.argv[1:]]
    stdin = b""
    if args[0] == b"ss-set" and len(args) == 3 and args[2] == b"-":
        stdin = sys.stdin.buffer.read(65537)
    request = b"".join(b"%d:%s," % (len(a), a) for a in args + [stdin])
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    chunks = []
    try:
        if len(os.fsencode(SOCKET)) < 100:
            sock.connect(SOCKET)
        else:
            folder = os.open(os.path.dirname(SOCKET), os.O_RDONLY)
            sock.connect("/proc/self/fd/%d/%s" % (folder, os.path.basename(SOCKET)))
            os.close(folder)
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as err:
        name = args[0].decode("utf-8", "replace")
        sys.stderr.write("%s: the agent is not answering (%s)\\n" % (name, err.strerror or err))
        return 4
    head, _, rest = b"".join(chunks).partition(b"\\n")
    try:
        code, out_size, err_size = (int(part) for part in head.split())
    except ValueError:
        sys.stderr.write("%s: bad answer from the agent\\n" % args[0].decode("utf-8", "replace"))
        return 1
    sys.stdout.buffer.write(rest[:out_size])
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(rest[out_size : out_size + err_size])
    sys.stderr.buffer.flush()
    return code


sys.exit(main())
"""
MAX_COMMAND_BYTES = 1 << 20


def parse_netstrings(data: bytes) -> list[bytes]:
    """``3:abc,0:,`` → ``[b"abc", b""]``; ValueError when malformed."""
    items = []
    while data:
        size, colon, rest = data.partition(b":")
        if not colon or not size.isdigit() or len(rest) < int(size) + 1:
            raise ValueError("malformed request")
        length = int(size)
        if rest[length : length + 1] != b",":
            raise ValueError("malformed request")
        items.append(rest[:length])
        data = rest[length + 1 :]
    return items


def bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` (0600, in a 0700 folder), however long the path."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if len(os.fsencode(path)) < 100:
        sock.bind(path)
    else:
        fd = os.open(folder, os.O_RDONLY)
        try:
            sock.bind(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
        finally:
            os.close(fd)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


class CommandServer:
    """The daemon's socket: runs the ss-* commands its scripts call, on its own client.

    One thread per command (a blocked ``ss-get`` holds one); every command shares the
    daemon's kept-alive connections to the server.
    """

    def __init__(self, path: str, client: Client) -> None:
        self.path = path
        self.client = client
        self.sock = bind_unix(path)
        self.thread = threading.Thread(target=self._accept, name="ss-socket", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = bytearray()
                while len(data) <= MAX_COMMAND_BYTES:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                code, out, err = self.answer(bytes(data))
                conn.sendall(b"%d %d %d\n" % (code, len(out), len(err)) + out + err)
            except OSError:
                pass  # the script is gone: nobody to answer

    def answer(self, data: bytes) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of the command in ``data``."""
        try:
            *args, stdin = parse_netstrings(data)
            argv = [os.fsdecode(arg) for arg in args]
        except ValueError:
            return 2, b"", b"ss: malformed request\n"
        if not argv or argv[0] not in SS_COMMANDS:
            return 2, b"", b"ss: unknown command\n"
        ctx = Context(self.client.bounded(), stdin)
        try:
            code = dispatch(argv[0], argv[1:], ctx)
        except Exception as err:  # the daemon must outlive any one command
            LOG.exception("%s failed", argv[0])
            ctx.error(f"{argv[0]}: internal error: {err}\n")
            code = 1
        return code, bytes(ctx.out), bytes(ctx.err)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            os.remove(self.path)


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """Runs one instance's recipe through the run's state machine."""

    def __init__(self, config: Config, client: Client) -> None:
        self.config = config
        self.client = client
        self.workdir = config.workdir
        self.bin_dir = os.path.join(self.workdir, "bin")
        self.logs_dir = os.path.join(self.workdir, "logs")
        self.pid_file = os.path.join(self.workdir, "agent.pid")
        self.socket_path = os.path.join(self.workdir, ".agent", "ss.sock")
        self.commands: CommandServer | None = None
        self.recipe: dict[str, Any] = {}
        self.instance = config.instance
        self.state = ""
        self.aborted = False
        # Seen by the abort watch (another thread): the run's abort message, once raised.
        self.abort_seen: str | None = None
        self.script_running = threading.Event()
        self.finished = threading.Event()
        self.report_lock = threading.RLock()
        self.report_dir: str | None = None
        self.reporting_ran = False
        self.reported = False
        self.scale_round: object = None  # the last scale round this instance took part in

    # -- setup

    def setup(self) -> None:
        for folder in (self.workdir, self.bin_dir, self.logs_dir):
            os.makedirs(folder, exist_ok=True)
        self._write_pid_file()
        self.commands = CommandServer(self.socket_path, self.client)
        self._write_wrappers()

    def _write_pid_file(self) -> None:
        other = read_pid(self.pid_file)
        if other and other != os.getpid() and is_agent(other):
            raise AgentError(f"an agent already runs in {self.workdir} (pid {other})")
        temp = self.pid_file + ".tmp"
        with open(temp, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(temp, self.pid_file)

    def remove_pid_file(self) -> None:
        if self.commands is not None:
            self.commands.close()
        if read_pid(self.pid_file) == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(self.pid_file)

    def _write_wrappers(self) -> None:
        python = sys.executable or "/usr/bin/python3"
        for command in SS_COMMANDS:
            path = os.path.join(self.bin_dir, command)
            text = WRAPPER.format(python=python, command=command, socket=self.socket_path)
            temp = path + ".tmp"
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temp, 0o755)
            os.replace(temp, path)

    # -- the run

    def run(self) -> int:
        """Take this instance through the run; the daemon's exit status.

        Whatever goes wrong ends in an abort that names it (a failed step, a request the
        server refused) and a report holding the script logs; a destroyed run (its token
        refused) ends the agent quietly.
        """
        watch = threading.Thread(target=self.watch_for_abort, name="abort-watch", daemon=True)
        try:
            return self._run(watch)
        except TokenRefused as err:
            LOG.info("the server no longer knows this instance's token (%s): agent exits", err)
            return 0
        finally:
            self.finished.set()

    def _run(self, watch: threading.Thread) -> int:
        try:
            self.recipe = self.client.recipe()
            self.instance = self.instance or str(self.recipe.get("instance") or "")
            # Created by a scale round: it takes part in it with the full chain.
            self.scale_round = (self.recipe.get("scaling") or {}).get("round")
            LOG.info(
                "recipe for %s: node %s, cloud %s, built %s",
                self.instance,
                self.recipe.get("node"),
                self.recipe.get("cloud_type"),
                bool(self.recipe.get("built")),
            )
            self.vote("Provisioning")
            watch.start()
            for state in WORK_STATES:
                if not self.wait_for(state):
                    break
                if self.state != state:
                    LOG.info("run is already past %s (%s): skipping its work", state, self.state)
                    continue
                LOG.info("run entered %s", state)
                if state == "Executing":
                    self.do_executing()
                else:
                    self.do_sending_reports()
                self.vote(state)
            self.finished.set()  # no script runs from here on: the abort watch may end
            if self.aborted:
                self.report_after_failure()
            self.wait_until_over()
            return 0
        except StepFailed as failure:
            LOG.error("%s", failure.message)
            self.raise_abort(failure.message)
            self.report_after_failure()
            return 1
        except AbortedError as err:
            LOG.warning("the run was aborted: %s", err.abort_message)
            self.aborted = True
            self.report_after_failure()
            self.wait_until_over()
            return 0
        except TokenRefused:
            raise
        except AgentError as err:
            # A 4xx the agent did not expect, or a server gone for too long: say so.
            message = f"agent of `{self.instance}`: {err}"
            LOG.error("%s", message)
            self.raise_abort(message)
            self.report_after_failure()
            return 1
        except Exception as err:
            LOG.exception("agent failure")
            message = f"agent of `{self.instance}` failed: {type(err).__name__}: {err}"
            self.raise_abort(message)
            self.report_after_failure()
            return 1

    def watch_for_abort(self) -> None:
        """Thread: follow the run's state; when an abort comes while a script runs, send the
        logs so far, since that script may never end (SlipStream issue #170)."""
        state: str | None = None
        while not self.finished.is_set():
            started = time.monotonic()
            try:
                doc = self.client.state(wait=MAX_WAIT_CHUNK, after=state)
            except AgentError:
                return
            if doc.get("abort"):
                self.abort_seen = str(doc["abort"])
                with self.report_lock:
                    # Not once the daemon reports after a failure of its own: one report.
                    if self.script_running.is_set() and not self.finished.is_set():
                        LOG.warning(
                            "the run was aborted while a script runs: sending the logs so far"
                        )
                        self.send_report(partial=True)
                return
            new = str(doc.get("state") or "")
            if new in OVER_STATES:
                return
            if new == state:
                pace(started, MAX_WAIT_CHUNK, None)
            state = new

    def vote(self, state: str) -> None:
        LOG.info("vote: %s complete", state)
        self.client.vote(state)

    def poll_state(self, wait: int) -> None:
        started = time.monotonic()
        before = self.state
        doc = self.client.state(wait=wait, after=self.state or None)
        self.state = str(doc.get("state") or "")
        if doc.get("abort"):
            if not self.aborted:
                LOG.warning("the run was aborted: %s", doc.get("abort"))
            self.aborted = True
        if self.state != before:
            LOG.info("run state: %s", self.state)
        elif wait:
            pace(started, wait, None)

    def wait_for(self, target: str) -> bool:
        """Wait until the run reaches ``target``; False when the run stopped instead."""
        self.poll_state(0)
        while True:
            if self.aborted or self.state in OVER_STATES:
                return False
            if self.state == target or self._is_past(target):
                return True
            self.poll_state(MAX_WAIT_CHUNK)

    def _is_past(self, target: str) -> bool:
        if self.state not in STATE_ORDER:
            return False
        return STATE_ORDER.index(self.state) > STATE_ORDER.index(target)

    def wait_until_over(self) -> None:
        if not self.state:
            self.poll_state(0)
        while self.state not in OVER_STATES:
            if self.state == "Provisioning" and not self.aborted:
                # Ready → Provisioning again: a scale round of a scalable run (once each).
                scaling = self.client.recipe().get("scaling") or {}
                if scaling.get("round") and scaling.get("round") != self.scale_round:
                    self.scale_round = scaling["round"]
                    self.on_scale(scaling)
                    continue
            self.poll_state(MAX_WAIT_CHUNK)
        LOG.info("run is over (%s): agent exits", self.state)

    def on_scale(self, scaling: Mapping[str, Any]) -> None:
        """One scale round, as SlipStream's node executor ran it: an instance being removed
        runs ``pre_scale`` and sends its report, then votes (and is destroyed); the others
        vote Provisioning, run ``on_vm_add`` / ``on_vm_remove`` in Executing and vote each
        barrier until Ready. New instances of the round run the full chain instead.
        """
        action = str(scaling.get("action") or "")
        vms = [str(v) for v in scaling.get("vms") or []]
        env = {
            "SLIPSTREAM_SCALING_NODE": str(scaling.get("node") or ""),
            "SLIPSTREAM_SCALING_VMS": " ".join(vms),
            "SLIPSTREAM_SCALING_ACTION": action,
        }
        LOG.info("scale action %s of %s: %s", action, env["SLIPSTREAM_SCALING_NODE"], vms)
        if action == SCALE_REMOVAL and self.instance in vms:
            self.run_script("pre_scale", env)
            self.reported = self.reporting_ran = False
            self.do_sending_reports()
            self.vote("Provisioning")
            LOG.info("removed from the run: waiting to be stopped")
            while self.state not in OVER_STATES:
                self.poll_state(MAX_WAIT_CHUNK)
            return
        self.vote("Provisioning")
        if not self.wait_for("Executing"):
            return
        if self.state == "Executing":
            target = {SCALE_CREATION: "on_vm_add", SCALE_REMOVAL: "on_vm_remove"}.get(action)
            if target:
                self.run_script(target, env)
            self.vote("Executing")
        if not self.wait_for("SendingReports"):
            return
        if self.state == "SendingReports":
            self.vote("SendingReports")

    def raise_abort(self, message: str) -> None:
        """Abort the run, unless it is already aborted (e.g. a script hit the fence)."""
        try:
            doc = self.client.state(wait=0)
            if doc.get("abort") or doc.get("state") in ("Aborted", "Cancelled"):
                LOG.info("run already aborted (%s): not overwriting", doc.get("abort"))
                return
            self.client.abort(message)
        except AgentError as err:
            LOG.error("could not abort the run: %s", err)

    # -- the work of each state

    def do_executing(self) -> None:
        if self.recipe.get("built"):
            LOG.info("built image: skipping the install steps")
        else:
            self.run_script("pre_install")
            self.packages_step()
            self.run_script("post_install")
        self.run_script("deployment")

    def do_sending_reports(self) -> None:
        self.run_reporting()
        self.send_report()

    def run_reporting(self, limit: float | None = None, fenced: bool = True) -> None:
        """The ``reporting`` script, with a fresh ``$SLIPSTREAM_REPORT_DIR``."""
        reports = os.path.join(self.workdir, "reports")
        os.makedirs(reports, exist_ok=True)
        self.report_dir = tempfile.mkdtemp(prefix="report-", dir=reports)
        self.reporting_ran = True
        env = {"SLIPSTREAM_REPORT_DIR": self.report_dir}
        self.run_script("reporting", env, limit, fenced)

    def report_after_failure(self) -> None:
        """After a failure or an abort: run ``reporting`` (bounded; its failure is only
        logged) unless it ran, then send the report. Never raises: the run is over."""
        with self.report_lock:
            self.finished.set()  # the abort watch sends no partial report from now on
        if self.reported:
            return
        try:
            if not self.reporting_ran:
                try:
                    self.run_reporting(limit=REPORTING_LIMIT_S, fenced=False)
                except StepFailed as failure:
                    LOG.warning("after the failure: %s", failure.message)
            self.send_report()
        except StepFailed as failure:
            LOG.error("%s", failure.message)
            self.raise_abort(failure.message)
        except AgentError as err:
            LOG.error("could not send the report: %s", err)
        except Exception:
            LOG.exception("could not send the report")

    def send_report(self, partial: bool = False) -> None:
        """Upload the report: what ``reporting`` left in its folder and the script logs.

        One over the server's limit is not sent: the run is aborted naming its size (the
        logs alone are sent instead, so the cause stays readable). ``partial`` (the logs
        so far, from the abort watch) leaves the final report still to send.
        """
        with self.report_lock:
            if self.reported:
                return
            path = report_archive(self.instance, self.report_dir, self.logs_dir, self.workdir)
            try:
                size = os.path.getsize(path)
                if size > MAX_REPORT_BYTES:
                    os.remove(path)
                    path = report_archive(self.instance, None, self.logs_dir, self.workdir)
                    upload_file(self.client, path, quiet=True)
                    self.reported = True
                    raise StepFailed(
                        f"report of `{self.instance}` is {size / (1 << 20):.1f} MiB, over the "
                        f"{MAX_REPORT_BYTES >> 20} MiB limit (the script logs were sent alone)"
                    )
                LOG.info("uploading the report (%d bytes)%s", size, " (partial)" * partial)
                try:
                    upload_file(self.client, path)
                except TokenRefused:
                    raise
                except Refused as err:
                    raise StepFailed(f"report of `{self.instance}` was refused: {err}") from None
                self.reported = not partial
            finally:
                with contextlib.suppress(OSError):
                    os.remove(path)

    def packages_step(self) -> None:
        packages = [str(name) for name in self.recipe.get("packages") or []]
        if not packages:
            return
        for name in packages:
            if not valid_package_name(name):
                raise StepFailed(f"package name {name!r} of `{self.instance}` is not valid")
        if self.recipe.get("cloud_type") == "local":
            for name in packages:
                if not package_present(name):
                    raise StepFailed(
                        f"package `{name}` is not on this host "
                        "(local cloud: packages must already be installed)"
                    )
                LOG.info("package %s is present", name)
            return
        self._run_part("packages", 1, 1, "packages", install_script(packages), {})

    def script_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env.update(self.config.exported())
        env["SLIPSTREAM_AGENT_SOCKET"] = self.socket_path
        env["SLIPSTREAM_INSTANCE"] = self.instance
        env["SLIPSTREAM_NODE"] = str(self.recipe.get("node") or "")
        env["SLIPSTREAM_INDEX"] = str(self.recipe.get("index") or "")
        env["SLIPSTREAM_CLOUD_TYPE"] = str(self.recipe.get("cloud_type") or "")
        env["SLIPSTREAM_DIID"] = self.config.run_id  # SlipStream's name: `ss-get --run $it`
        env["PATH"] = self.bin_dir + os.pathsep + env.get("PATH", os.defpath)
        env.update(extra)
        return env

    def script_parts(self, name: str) -> list[tuple[str, str]]:
        scripts = self.recipe.get("scripts") or {}
        parts = scripts.get(name) if isinstance(scripts, dict) else None
        if not parts:
            return []
        if isinstance(parts, str):
            parts = [{"text": parts}]
        found = []
        for part in parts:
            if isinstance(part, str):
                part = {"text": part}
            text = str(part.get("text") or "")
            if text.strip():
                found.append((str(part.get("component") or self.recipe.get("node") or ""), text))
        return found

    def run_script(
        self,
        name: str,
        extra_env: Mapping[str, str] | None = None,
        limit: float | None = None,
        fenced: bool = True,
    ) -> None:
        """Run each part of script ``name``; ``limit`` bounds each part's seconds. Once
        the run is aborted no further part starts (unless not ``fenced``)."""
        parts = self.script_parts(name)
        for number, (component, text) in enumerate(parts, 1):
            if fenced and self.abort_seen is not None:
                raise AbortedError(self.abort_seen)
            self._run_part(name, number, len(parts), component, text, extra_env or {}, limit)

    def _run_part(
        self,
        name: str,
        number: int,
        count: int,
        component: str,
        text: str,
        extra_env: Mapping[str, str],
        limit: float | None = None,
    ) -> None:
        label = f"script `{name}`"
        if count > 1:
            label += f" (part {number}/{count}, component `{component}`)"
        self.event(f"{self.instance}: {label} started")
        LOG.info("%s started", label)
        started = time.monotonic()
        code, last = self._execute(name, number, component, text, extra_env, limit)
        took = time.monotonic() - started
        outcome = f"{label} finished (exit {code}, {took:.1f}s)"
        LOG.info("%s", outcome)
        self.event(f"{self.instance}: {outcome}", "info" if code == 0 else "error")
        if code != 0:
            raise StepFailed(f"script `{name}` of `{self.instance}` failed (exit {code}): {last}")

    def _execute(
        self,
        name: str,
        number: int,
        component: str,
        text: str,
        extra_env: Mapping[str, str],
        limit: float | None = None,
    ) -> tuple[int, str]:
        temp_dir = os.path.join(self.workdir, "tmp")
        os.makedirs(temp_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{name}-{number}-", suffix=".sh", dir=temp_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        if text.startswith("#!"):
            os.chmod(path, stat.S_IRWXU)
            argv = [path]
        else:
            argv = ["/bin/sh", "-e", path]
        log_path = os.path.join(self.logs_dir, f"{name}.log")
        log = open(log_path, "ab")  # noqa: SIM115 - closed by ScriptRun's pump threads
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== {stamp} {name} part {number} ({component}) ===\n".encode())
        log.flush()
        try:
            try:
                runner = ScriptRun(argv, self.workdir, self.script_env(extra_env), log)
            except OSError as err:
                message = f"cannot run {name}: {err.strerror or err}"
                log.write((message + "\n").encode())
                log.close()
                return 127, message
            self.script_running.set()
            try:
                code = runner.wait(limit)
            finally:
                self.script_running.clear()
            if code is None:
                assert limit is not None
                return 124, f"stopped after {format_number(limit)}s"
            if code < 0:
                code = 128 - code  # killed by a signal: report it as the shell does
            return code, runner.last_line()
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)

    def event(self, message: str, level: str = "info") -> None:
        try:
            self.client.event(message, level)
        except AbortedError:
            pass
        except AgentError as err:
            LOG.warning("could not post event: %s", err)


def valid_package_name(name: str) -> bool:
    allowed = set(string.ascii_letters + string.digits + ".+-_:=~")
    return bool(name) and name[0].isalnum() and set(name) <= allowed


def package_present(name: str) -> bool:
    """Whether a package (or a command of that name) is on this host."""
    if run_quietly(["/bin/sh", "-c", 'command -v "$1"', "sh", name]) is not None:
        return True
    if shutil.which("dpkg-query"):
        status = run_quietly(["dpkg-query", "-W", "-f=${Status}", name])
        if status is not None and b"ok installed" in status:
            return True
    return bool(shutil.which("rpm")) and run_quietly(["rpm", "-q", name]) is not None


def run_quietly(argv: list[str]) -> bytes | None:
    """The command's stdout when it exits 0, else None."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def install_script(packages: Sequence[str]) -> str:
    """A /bin/sh script installing packages with apt-get, dnf or yum (names pre-checked)."""
    names = " ".join(shlex.quote(name) for name in packages)
    return (
        'SUDO=""\n'
        'if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi\n'
        "if command -v apt-get >/dev/null 2>&1; then\n"
        "  export DEBIAN_FRONTEND=noninteractive\n"
        "  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300"
        " update\n"
        "  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300"
        f" install --no-install-recommends {names}\n"
        "elif command -v dnf >/dev/null 2>&1; then\n"
        f"  $SUDO dnf install -y {names}\n"
        "elif command -v yum >/dev/null 2>&1; then\n"
        f"  $SUDO yum install -y {names}\n"
        "else\n"
        '  echo "no package manager found (apt-get, dnf or yum)" >&2\n'
        "  exit 127\n"
        "fi\n"
    )


def report_archive(instance: str, report_dir: str | None, logs_dir: str, workdir: str) -> str:
    """A .tar.gz (a temporary file: the caller removes it) unpacking into ``<instance>/``:
    the files ``reporting`` left in ``report_dir``, and under ``logs/`` every script's log
    and the agent's own. Symlinks are kept as links."""
    root = instance or "report"
    fd, path = tempfile.mkstemp(prefix="report-", suffix=".tar.gz", dir=workdir)
    os.close(fd)
    with tarfile.open(path, "w:gz") as archive:
        if report_dir and os.path.isdir(report_dir):
            archive.add(report_dir, arcname=root)
        else:
            folder = tarfile.TarInfo(root)
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            archive.addfile(folder)
        taken = report_dir and os.path.lexists(os.path.join(report_dir, "logs"))
        logs = f"{root}/{'slipstream-logs' if taken else 'logs'}"
        if os.path.isdir(logs_dir):
            archive.add(logs_dir, arcname=logs)
        agent_log = os.path.join(workdir, "agent.log")
        if os.path.isfile(agent_log):
            archive.add(agent_log, arcname=f"{logs}/agent.log")
    return path


def upload_file(client: Client, path: str, quiet: bool = False) -> None:
    """Send a report archive; ``quiet``: a failure is only logged."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        client.report(data)
    except AgentError as err:
        if not quiet:
            raise
        LOG.error("could not send the report: %s", err)


# --------------------------------------------------------------------------- run / stop


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) from /proc, or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return fields[0], int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """Running (a zombie, waiting for its parent to reap it, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    info = _proc_stat(pid)
    return info is None or info[0] not in ("Z", "X")


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _proc_stat(int(entry))
            if info is not None and info[1] == pgid and info[0] not in ("Z", "X"):
                return True
    return False


def is_agent(pid: int) -> bool:
    """Whether pid is alive and (where /proc tells) runs this agent: pid files go stale."""
    if not is_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True
    return os.path.basename(__file__).encode() in cmdline


def cmd_run(argv: Sequence[str], ctx: Context) -> int:
    options, args = parse_options(argv, {"--env-file": True})
    if args:
        raise UsageError("takes no arguments")
    env = dict(os.environ)
    if options.get("--env-file"):
        # Kept out of os.environ: the token must not reach the scripts' environment.
        env.update(read_env_file(options["--env-file"]))
    config = Config(env)
    config.check()
    # Lead a process group of our own, so `stop` can end every script we started.
    try:
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    except OSError:
        pass
    os.makedirs(config.workdir, exist_ok=True)
    handler = logging.FileHandler(os.path.join(config.workdir, "agent.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    # The daemon retries for as long as its run may live; a destroyed run ends it (401).
    client = Client(config, note=lambda message: LOG.warning("%s", message), retry_for=None)
    daemon = Daemon(config, client)
    LOG.info(
        "agent starting: pid %d, run %s, instance %s, workdir %s",
        os.getpid(),
        config.run_id,
        config.instance or "?",
        config.workdir,
    )
    try:
        daemon.setup()
        code = daemon.run()
    except AgentError as err:
        LOG.error("%s", err)
        raise
    except SystemExit as stop:
        LOG.info("agent stopped (%s)", stop.code)
        raise
    finally:
        daemon.remove_pid_file()
    LOG.info("agent exits with status %d", code)
    return code


def cmd_stop(argv: Sequence[str], ctx: Context) -> int:
    options, args = parse_options(argv, {"--env-file": True, "--grace": True})
    if args:
        raise UsageError("takes no arguments")
    grace = STOP_GRACE_SECONDS
    if "--grace" in options:
        grace = parse_seconds("--grace", options["--grace"])
    load_env_file(options.get("--env-file"))
    workdir = Config(os.environ).workdir
    pid_file = os.path.join(workdir, "agent.pid")
    if not os.path.exists(pid_file):
        sys.stderr.write(f"stop: no agent running in {workdir} (no agent.pid)\n")
        return 0
    pid = read_pid(pid_file)
    if pid is None:
        raise AgentError(f"{pid_file} does not hold a process id")
    if not is_agent(pid):
        sys.stderr.write(f"stop: agent (pid {pid}) is not running; removing stale agent.pid\n")
        os.remove(pid_file)
        return 0
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = -1
    whole_group = pgid == pid and pgid != os.getpgid(0)

    def send(signum: int) -> None:
        try:
            if whole_group:
                os.killpg(pgid, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def gone() -> bool:
        return not group_alive(pgid) if whole_group else not is_alive(pid)

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone():
        send(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
    if read_pid(pid_file) == pid:
        with contextlib.suppress(OSError):
            os.remove(pid_file)
    if not gone():
        raise AgentError(f"agent (pid {pid}) did not stop")
    sys.stderr.write(f"stop: stopped agent (pid {pid})\n")
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS: dict[str, Callable[[Sequence[str], Context], int]] = {
    "ss-get": cmd_get,
    "ss-set": cmd_set,
    "ss-display": cmd_display,
    "ss-abort": cmd_abort,
    "ss-random": cmd_random,
    "ss-get-all": cmd_get_all,
    "run": cmd_run,
    "stop": cmd_stop,
}


def dispatch(command: str, argv: Sequence[str], ctx: Context) -> int:
    """Run one command; errors become a message on the context's stderr and an exit code."""
    try:
        return COMMANDS[command](argv, ctx)
    except HelpRequested:
        ctx.write(f"usage: {USAGES[command]}\n")
        return 0
    except UsageError as err:
        ctx.error(f"{command}: {err}\nusage: {USAGES[command]}\n")
        return 2
    except WaitTimedOut as err:
        ctx.error(f"Error: {err}\n")  # as SlipStream's commands printed a TimeoutException
        return err.code
    except AgentError as err:
        ctx.error(f"{command}: {err}\n")
        return err.code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    invoked = os.path.basename(argv[0]) if argv else ""
    if invoked.endswith(".py") and invoked[:-3] in SS_COMMANDS:
        invoked = invoked[:-3]
    if invoked in COMMANDS:
        command, rest = invoked, argv[1:]
    elif len(argv) > 1 and argv[1] in COMMANDS:
        command, rest = argv[1], argv[2:]
    else:
        sys.stderr.write(
            "usage: slipstream_agent.py COMMAND [ARGS]\n"
            f"commands: {', '.join(COMMANDS)} (or call it as ss-get, ss-set, ...)\n"
        )
        return 2
    try:
        return dispatch(command, rest, Context())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
