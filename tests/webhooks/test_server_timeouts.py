"""The HTTP server lets go of connections that never send a request head, and keeps those
that do: an idle socket, or one stopped in the middle of a request line, is closed
``REQUEST_HEAD_S`` after it opened; a kept-alive connection that got its answer is not.
Answers arrive whole (head and body written together)."""

from __future__ import annotations

import socket
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webhooks import server as server_module
from webhooks.server import HttpServer

HEAD_S = 0.5


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hi")


def answer(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while not data.endswith(b"\r\n\r\nhi"):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_connections_without_a_request_head_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "REQUEST_HEAD_S", HEAD_S)
    server = HttpServer(Starlette(routes=[Route("/", hello)]), tcp=("127.0.0.1", 0)).start()
    try:
        host, port = server.tcp_url.removeprefix("http://").rsplit(":", 1)
        idle = socket.create_connection((host, int(port)), timeout=10)
        half = socket.create_connection((host, int(port)), timeout=10)
        half.sendall(b"GET /agent/v1/ru")
        kept = socket.create_connection((host, int(port)), timeout=10)
        assert answer(kept).startswith(b"HTTP/1.1 200 OK\r\n")
        opened = time.monotonic()
        assert closed_by_server(idle)
        assert closed_by_server(half)
        assert time.monotonic() - opened < 8
        time.sleep(2 * HEAD_S)
        assert answer(kept).startswith(b"HTTP/1.1 200 OK\r\n")  # still open, still served
        for sock in (idle, half, kept):
            sock.close()
    finally:
        server.stop()
