"""The OTLP/HTTP exporters' transport: plain ``http://`` through ``http.client``, the rest through requests.

Why: an export's own CPU is paid by a thread (or the gevent hub) that competes
with the requests being served, and through ``requests`` one POST of a 512-span
batch costs several times what ``http.client`` costs for the same bytes
(``bench/span_path.py``, docs/pipelines.md).  Most of that is per-request work
a collector on plain HTTP never needs: reading proxy variables and ``~/.netrc``
again, merging session settings, cookie jars, redirect resolution.

The SDK's exporters take a transport (``BaseHTTPTransport`` from
``opentelemetry-exporter-http-transport``; the private ``_transport``
argument of ``opentelemetry-exporter-otlp-proto-http`` >= 1.45.0).  This one
keeps everything above it the SDK's: retries, backoff, ``Retry-After``,
compression, headers, timeouts, the exporter's own metrics.  It decides per URL,
once:

* ``http://`` with no proxy from the environment applying to it (``HTTP_PROXY``,
  ``ALL_PROXY`` and ``NO_PROXY``, as requests reads them), no ``~/.netrc`` entry and no
  credentials in the URL: sent by ``http.client`` over a small pool of kept-alive
  connections;
* anything else (``https://``, a proxy, netrc credentials): the SDK's own
  ``RequestsHTTPTransport`` with our session (``exporters._session``), as before.

The proxy and netrc answers are read once per URL, when the worker first
exports, like every other setting.  What goes on the wire is the same request
the requests transport sends: method, path, body and every header the SDK sets
(``tests/test_http_transport.py`` compares them on a real server); only the
transport's own defaults differ (requests adds ``Accept: */*`` and offers to
decode compressed responses; ``http.client`` asks for ``identity``).

Errors keep the requests transport's classification, which decides whether the
SDK retries: failing to connect, a timeout (also while reading the body), a reset,
or a connection closed before the status line are connection errors (the SDK
retries at once, then with backoff); a body cut short after the status line, or
no time left for the request, is not.  A collector that answers before reading
the whole body and closes (413, 429, 503) has its answer read, as urllib3 does.
Each error of the direct path carries that decision; the fallback's errors are
classified by the fallback (requests raises a bare ``OSError`` for a missing
client certificate, which it does not retry).  A connection idle for more than
``_IDLE_CHECK`` seconds is checked before reuse, so a collector that closed it
meanwhile costs no failed attempt; urllib3 checks on every reuse, but each check
is a system call, and an export thread waits for the GIL after every one.  One
closed sooner is found by the send, and the SDK retries that at once.
"""

from __future__ import annotations

import http.client
import select
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

_IDLE_CHECK = 1.0  # seconds a kept connection may idle before it is checked for a close by the peer
_KEEP = 16  # idle connections kept per transport (the gevent model runs up to 16 exports at once)
_UNDECIDED = object()


@dataclass(frozen=True)
class Route:
    """Where a plain-HTTP URL goes: host and port to connect to, and the request target."""

    host: str
    port: int
    target: str


def direct_route(url: str) -> Route | None:
    """The ``Route`` for ``url`` if ``http.client`` may send to it, else None (requests will)."""
    import requests.utils

    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname or parts.username or parts.password:
        return None
    proxies = requests.utils.get_environ_proxies(url)
    if proxies.get("http") or proxies.get("all") or proxies.get("http://" + parts.hostname):
        return None
    if requests.utils.get_netrc_auth(url):
        return None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if not (target.isascii() and target.isprintable()) or " " in target:
        return None  # requests percent-encodes such a path; http.client would refuse it
    return Route(parts.hostname, parts.port or 80, target)


@dataclass(frozen=True)
class PlainHTTPResult(BaseHTTPResult):
    """A response read by ``http.client``: status, reason, body and headers."""

    body: bytes = field(default=b"", repr=False)
    header_items: tuple = field(default=(), repr=False)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        # Case-insensitive, repeated headers joined by ", " (BaseHTTPResult.headers' contract).
        from requests.structures import CaseInsensitiveDict

        joined: CaseInsensitiveDict = CaseInsensitiveDict()
        for name, value in self.header_items:
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        return joined


_CONNECTION_ERROR = "_gunicorn_otel_connection_error"  # set on each error the direct path returns


def _failed(error: Exception, connection_error: bool) -> PlainHTTPResult:
    """A failed result whose error carries the retry decision requests' transport would make.

    Errors of the requests fallback carry none, and are classified by the fallback.
    """
    setattr(error, _CONNECTION_ERROR, connection_error)
    return PlainHTTPResult(error=error)


class _OneSendConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` that sends a bytes body in the same ``send`` as the headers.

    ``http.client`` sends the headers, then the body, in two ``send`` calls, each
    preceded by the ``poll`` of the socket's timeout.  Every one of them releases
    the GIL, and an export thread must then wait for a busy request thread or event
    loop to hand it back (docs/pipelines.md, "Where the cost goes").  Overrides
    ``HTTPConnection._send_output``, unchanged in CPython 3.6 to 3.13; anything but a
    bytes body keeps the original.
    """

    def _send_output(self, message_body=None, encode_chunked=False):
        buffer = getattr(self, "_buffer", None)  # the header lines putrequest/putheader collected
        if encode_chunked or not isinstance(message_body, bytes) or not isinstance(buffer, list):
            return super()._send_output(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]  # private, absent from typeshed
        buffer.extend((b"", b""))
        head = b"\r\n".join(buffer)
        del buffer[:]
        self.send(head + message_body)


class _Connection:
    __slots__ = ("conn", "idle_since")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.idle_since = time.monotonic()


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed (or written to) by the other end."""
    sock = conn.sock
    if sock is None:
        return True
    # poll, not select: no FD_SETSIZE limit (a gevent worker's sockets pass 1024).
    # An idle HTTP/1.1 connection has nothing to read unless it is closing.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class ExportTransport(BaseHTTPTransport):
    """``BaseHTTPTransport`` for the OTLP/HTTP exporters; see the module docstring."""

    def __init__(self, fallback: BaseHTTPTransport) -> None:
        self._fallback = fallback
        self._routes: dict = {}
        self._idle: list[_Connection] = []  # list.pop/append are atomic under the GIL and in gevent
        self._closed = False  # after close(), a connection still in use is closed when its request ends

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        route = self._routes.get(url, _UNDECIDED)
        if route is _UNDECIDED:
            route = self._routes[url] = direct_route(url)
        if route is None:
            return self._fallback.request(method, url, headers=headers, timeout=timeout, data=data)
        if timeout is not None and timeout <= 0:  # requests refuses it (ValueError), not retried
            return _failed(ValueError("no time left for the request"), False)
        kept = self._take(route)
        conn = kept.conn if kept is not None else _OneSendConnection(route.host, route.port, timeout=timeout)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            else:
                conn.timeout = timeout
            response = self._exchange(conn, method, route.target, data, headers)
        except (OSError, http.client.HTTPException) as error:
            # Before a status line: connecting, sending, a timeout, a connection
            # closed or reset (requests: ConnectionError, Timeout; retried).
            conn.close()
            return _failed(error, True)
        try:
            body = response.read()
        except TimeoutError as error:  # requests: ConnectionError(ReadTimeoutError); retried
            conn.close()
            return _failed(error, True)
        except (OSError, http.client.HTTPException) as error:  # requests: ChunkedEncodingError; not retried
            conn.close()
            return _failed(_BodyCutShort(error), False)
        if response.will_close:
            conn.close()
        else:
            self._give_back(kept or _Connection(conn))
        return PlainHTTPResult(
            status_code=response.status,
            reason=response.reason,
            body=body,
            header_items=tuple(response.getheaders()),
        )

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, method: str, target: str, data, headers):
        """Send the request and read the status line and headers.

        A collector may answer before it has read the whole body (413, 429, 503 with
        ``Retry-After``) and then close, so the send fails with a broken pipe or a
        reset.  As urllib3 does, read that answer if there is one; otherwise the send's
        error stands.
        """
        try:
            conn.request(method, target, body=data, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError) as send_error:
            try:
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise send_error from None
        return conn.getresponse()

    def _take(self, route: Route) -> _Connection | None:
        idle = self._idle
        while idle:
            try:
                kept = idle.pop()
            except IndexError:
                return None
            if (kept.conn.host, kept.conn.port) != (route.host, route.port):
                kept.conn.close()
                continue
            if time.monotonic() - kept.idle_since > _IDLE_CHECK and _closed_by_peer(kept.conn):
                kept.conn.close()
                continue
            return kept
        return None

    def _give_back(self, kept: _Connection) -> None:
        if self._closed or len(self._idle) >= _KEEP:
            kept.conn.close()
            return
        kept.idle_since = time.monotonic()
        self._idle.append(kept)
        if self._closed:  # close() ran between the check and the append: nothing may stay open
            self._close_idle()

    def is_connection_error(self, exception: Exception | None) -> bool:
        decided = getattr(exception, _CONNECTION_ERROR, None)
        if decided is not None:  # from the direct path
            return bool(decided)
        return self._fallback.is_connection_error(exception)

    def close(self) -> None:
        self._closed = True
        self._close_idle()
        self._fallback.close()

    def _close_idle(self) -> None:
        while self._idle:
            try:
                self._idle.pop().conn.close()
            except IndexError:
                break


class _BodyCutShort(Exception):
    """The response's body could not be read after its status line (not retried, as with requests)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"response body cut short: {cause!r}")


def supported() -> bool:
    """Whether the installed OTLP/HTTP exporters take a ``_transport`` (>= 1.45.0 do; checked, it is private)."""
    import inspect

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    try:
        return "_transport" in inspect.signature(OTLPSpanExporter.__init__).parameters
    except (TypeError, ValueError):
        return False


def build(*, verify, cert, session) -> ExportTransport:
    """Our transport over the SDK's requests transport (same ``verify``/``cert`` as the SDK would pass it)."""
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport

    return ExportTransport(RequestsHTTPTransport(verify=verify, cert=cert, session=session))
