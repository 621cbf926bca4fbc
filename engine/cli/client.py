"""The CLI's client of the REST API: standard library only (``http.client``, ``ssl``), so a
client command starts as fast as an embedded one and the engine imports no web framework.

``SLIPSTREAM_URL`` and ``SLIPSTREAM_TOKEN`` make the CLI a client; HTTPS trusts the system's
certificate authorities, or only the certificate in ``SLIPSTREAM_CA_FILE`` (the service's
own ``home/tls/cert.pem`` when it made a self-signed one).

Example:
    >>> from_env({"SLIPSTREAM_URL": "https://ss.example:8780"}) is None
    Traceback (most recent call last):
    ...
    engine.cli.client.ClientSetupError: SLIPSTREAM_URL is set but SLIPSTREAM_TOKEN is not
    >>> from_env({}) is None
    True
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

#: How long one request may take (a plan runs Terraform; a deploy compiles).
TIMEOUT_S = 300.0
#: A stream sends a comment every 15 s: silence this long means the connection is dead.
STREAM_IDLE_S = 60.0
#: A stream that drops is taken up again from its last event, this many times in a row.
STREAM_RETRIES = 20


class ClientSetupError(Exception):
    """The client's settings are incomplete or wrong (a usage error)."""


@dataclass
class ApiError(Exception):
    """The service refused a call (``status`` 0: it could not be reached)."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class StreamEvent:
    """One message of a Server-Sent-Events stream."""

    id: str
    event: str
    data: str


def from_env(environ: Mapping[str, str]) -> ServiceClient | None:
    """The client the environment asks for, or None (then the CLI is embedded)."""
    url, token = environ.get("SLIPSTREAM_URL", ""), environ.get("SLIPSTREAM_TOKEN", "")
    if not url and not token:
        return None
    if not token:
        raise ClientSetupError("SLIPSTREAM_URL is set but SLIPSTREAM_TOKEN is not")
    if not url:
        raise ClientSetupError("SLIPSTREAM_TOKEN is set but SLIPSTREAM_URL is not")
    return ServiceClient(url, token, environ.get("SLIPSTREAM_CA_FILE") or None)


class ServiceClient:
    """Calls ``/api/v1`` of one service with one token, over one kept-alive connection."""

    def __init__(self, url: str, token: str, ca_file: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientSetupError(f"SLIPSTREAM_URL `{url}`: expected http(s)://host[:port]")
        self.url = url.rstrip("/")
        self.token = token
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as err:
                raise ClientSetupError(f"SLIPSTREAM_CA_FILE `{ca_file}`: {err}") from err
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(self._netloc, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """The JSON answer of ``METHOD /api/v1{path}``; :class:`ApiError` when refused.

        Example: ``client.call("GET", "/runs", query={"limit": 10})["runs"]``.
        """
        target = f"{self._prefix}/api/v1{path}"
        if query:
            target += "?" + urlencode(query, doseq=True)
        payload = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect(TIMEOUT_S)
            try:
                self._conn.request(method, target, payload, self._headers(payload))
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed meanwhile: once more, anew.
                self._close()
                if attempt == 2 or method not in ("GET", "DELETE"):
                    raise ApiError(0, "unreachable", f"{self.url}: connection lost") from None
            except (OSError, http.client.HTTPException) as err:
                self._close()
                raise ApiError(0, "unreachable", f"cannot reach {self.url}: {err}") from None
        return _answer(response.status, raw)

    def stream(self, path: str, query: Mapping[str, Any] | None = None) -> Iterator[StreamEvent]:
        """The messages of a Server-Sent-Events stream until it ends; a dropped connection
        is opened again from the last event id received (``Last-Event-ID``).

        Example: ``for message in client.stream(f"/runs/{run_id}/events/stream"): …``
        """
        last_id, failures, connected = "", 0, False
        while True:
            conn = self._connect(STREAM_IDLE_S)
            headers = {**self._headers(None), "Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            target = f"{self._prefix}/api/v1{path}"
            if query:
                target += "?" + urlencode(query, doseq=True)
            why = "closed by the service"
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                if response.status != 200:
                    _answer(response.status, response.read())
                    raise ApiError(response.status, "unexpected", "stream refused")
                connected = True
                for message in _messages(response):
                    failures = 0
                    if message.id:
                        last_id = message.id
                    yield message
                    if message.event == "end":
                        return
            except (OSError, http.client.HTTPException) as err:
                why = str(err) or type(err).__name__
            finally:
                conn.close()
            failures += 1
            if not connected or failures > STREAM_RETRIES:
                raise ApiError(0, "unreachable", f"{self.url}: event stream lost: {why}")
            time.sleep(min(5.0, 0.25 * 2**failures))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._close()


def _answer(status: int, raw: bytes) -> Any:
    """The decoded body of a 2xx answer; an :class:`ApiError` from any other."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if 200 <= status < 300:
        return doc
    if isinstance(doc, dict) and "message" in doc:
        details = doc.get("details") if isinstance(doc.get("details"), dict) else {}
        raise ApiError(status, str(doc.get("code", "")), str(doc["message"]), details or {})
    raise ApiError(status, "http_error", f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}")


def _messages(response: http.client.HTTPResponse) -> Iterator[StreamEvent]:
    """Parse a ``text/event-stream`` body into messages (comments and retry lines skipped).

    >>> import io
    >>> body = io.BytesIO(b": hi\\nid: 3\\ndata: {}\\n\\nevent: end\\ndata: x\\n\\n")
    >>> list(_messages(body))  # type: ignore[arg-type]
    [StreamEvent(id='3', event='message', data='{}'), StreamEvent(id='', event='end', data='x')]
    """
    fields: dict[str, list[str]] = {}
    while True:
        line = response.readline()
        if not line:
            return  # the server closed the stream without an end: the caller reconnects
        text = line.decode("utf-8").rstrip("\r\n")
        if text == "":
            if "data" in fields:
                yield StreamEvent(
                    (fields.get("id") or [""])[-1],
                    (fields.get("event") or ["message"])[-1],
                    "\n".join(fields["data"]),
                )
            fields = {}
        elif not text.startswith(":"):
            name, _, value = text.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
