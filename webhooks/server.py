"""The HTTP server: an ASGI app on uvicorn, in a thread of its own with its own event loop.

It listens on a Unix socket (agents on the ``local`` cloud: the socket sits in a private
folder, so nobody else can pose as the server) and, when asked, on TCP (agents on other
clouds, people, Git hosts), with TLS when given a certificate. One process, one app, as
many listeners as needed; uvicorn with httptools parses HTTP and keeps connections alive.

Example:
    >>> import tempfile, urllib.request
    >>> from starlette.applications import Starlette
    >>> from starlette.responses import PlainTextResponse
    >>> from starlette.routing import Route
    >>> app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("hi"))])
    >>> server = HttpServer(app, tcp=("127.0.0.1", 0)).start()
    >>> urllib.request.urlopen(server.tcp_url + "/").read()
    b'hi'
    >>> server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: Pending connections the kernel keeps per listener (hundreds of agents connect at once).
BACKLOG = 4096
#: Idle kept-alive connections are closed after this long (agents reconnect at once).
KEEP_ALIVE_S = 120
#: A new connection must send a whole request head within this long (an agent sends its
#: first request at once; idle sockets are let go).
REQUEST_HEAD_S = 30.0
#: On stop, how long open requests (long-polls included) may take before they are cut.
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class Tls:
    """A certificate and its key, PEM files."""

    cert: Path
    key: Path


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (0600; its folder made 0700), however long the
    path (Linux resolves ``/proc/self/fd/N`` to the folder N is open on)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        if len(os.fsencode(str(path))) < 100:
            sock.bind(str(path))
        else:
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                sock.bind(f"/proc/self/fd/{folder}/{path.name}")
            finally:
                os.close(folder)
    finally:
        os.umask(old)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named, or asyncio leaves TCP_NODELAY off on accepted connections (it
    # checks sock.proto) and every small answer waits out Nagle's 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def raise_file_limit() -> None:
    """Let the process hold as many connections as the system allows (thousands of agents)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class CoalescingTransport:
    """A connection's writes of one step of the event loop leave in one send.

    uvicorn writes an answer's head and body separately: two system calls, and two
    segments the agent wakes up for. Writes queue here and go out together once the
    loop's current step is done (the same step, for an answer); closing sends what is
    queued first. Everything else is the transport's own.
    """

    __slots__ = ("_due", "_loop", "_queued", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._queued: list[bytes] = []
        self._due = False

    def write(self, data: bytes) -> None:
        self._queued.append(data)
        if not self._due:
            self._due = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._due = False
        if self._queued:
            data = b"".join(self._queued)
            self._queued.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`, and
    closing a connection whose request head has not arrived :data:`REQUEST_HEAD_S` after
    it opened, or :data:`KEEP_ALIVE_S` after its last answer. uvicorn alone holds forever
    a connection that never sends a whole request head (its keep-alive timer starts only
    after an answer, and any byte received stops it), so idle sockets would use up the
    process's descriptors."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        coalescing: Any = CoalescingTransport(transport, self.loop)
        self.transport = coalescing
        self._await_head(REQUEST_HEAD_S)

    def _await_head(self, seconds: float) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(seconds, self._no_head)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _no_head(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head(KEEP_ALIVE_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)


class HttpServer:
    """Serves ``app`` on a Unix socket and/or a TCP port from a background thread."""

    def __init__(
        self,
        app: Any,
        *,
        unix: Path | None = None,
        tcp: tuple[str, int] | None = None,
        tls: Tls | None = None,
        on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None,
    ) -> None:
        self.app = app
        self.unix = unix
        self.tls = tls
        self._on_loop = on_loop
        self._unix_sock = bind_unix(unix) if unix is not None else None
        self._tcp_sock = bind_tcp(*tcp) if tcp is not None else None
        self._servers: list[uvicorn.Server] = []
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)

    @property
    def unix_url(self) -> str:
        """``unix:/path`` of the Unix socket (what ``server.url`` files hold for agents)."""
        assert self.unix is not None
        return f"unix:{self.unix.resolve()}"

    @property
    def tcp_url(self) -> str:
        assert self._tcp_sock is not None
        host, port = self._tcp_sock.getsockname()[:2]
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"

    def start(self) -> HttpServer:
        """Start serving; returns once every listener accepts connections."""
        raise_file_limit()
        self._thread.start()
        self._started.wait(timeout=60)
        if self._error is not None:
            raise self._error
        return self

    def _config(self, tls: Tls | None) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http=Protocol,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=int(STOP_GRACE_S),
            backlog=BACKLOG,
            server_header=False,
            # Nothing reads the client's address, and a forwarded one would be trusted from
            # any local user: the middleware that rewrites it is a tenth of a request's time.
            proxy_headers=False,
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            ssl_cert_reqs=ssl.CERT_NONE,
        )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            if self._on_loop is not None:
                self._on_loop(loop)
            groups: list[tuple[uvicorn.Config, list[socket.socket]]] = []
            plain = [s for s in (self._unix_sock,) if s is not None]
            if self._tcp_sock is not None and self.tls is None:
                plain.append(self._tcp_sock)
            if plain:
                groups.append((self._config(None), plain))
            if self._tcp_sock is not None and self.tls is not None:
                groups.append((self._config(self.tls), [self._tcp_sock]))
            self._servers = [uvicorn.Server(config) for config, _ in groups]
            serving = [
                loop.create_task(server.serve(sockets=socks))
                for server, (_, socks) in zip(self._servers, groups, strict=True)
            ]
            loop.run_until_complete(self._wait_started())
            self._started.set()
            loop.run_until_complete(asyncio.gather(*serving, return_exceptions=True))
        except BaseException as err:  # handed to start()
            self._error = err
            self._started.set()
        finally:
            _drain(loop)
            loop.close()

    async def _wait_started(self) -> None:
        while not all(server.started for server in self._servers):
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        """Stop accepting, give open requests a moment, then close everything."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            for server in self._servers:
                server.should_exit = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._force_later)
        self._thread.join(timeout=STOP_GRACE_S + 10)
        for sock in (self._unix_sock, self._tcp_sock):
            if sock is not None:
                sock.close()
        if self.unix is not None:
            with contextlib.suppress(OSError):
                self.unix.unlink()

    def _force_later(self) -> None:
        assert self.loop is not None

        def force() -> None:
            for server in self._servers:
                server.force_exit = True

        self.loop.call_later(STOP_GRACE_S, force)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on the loop (requests cut by the stop) and let it unwind, so
    nothing touches the loop once it is closed."""
    with contextlib.suppress(Exception):
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(asyncio.sleep(0))  # connection_lost callbacks
        loop.run_until_complete(loop.shutdown_asyncgens())
