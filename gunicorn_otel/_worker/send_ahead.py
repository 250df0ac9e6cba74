"""A full span batch's first POST, sent by the thread that filled it, without waiting for the answer.

Why: the export thread of ``thread_batch.ThreadBatcher`` costs a busy worker
more than its own CPU.  Each of its blocking calls (wake-up, send, poll, recv)
ends with the thread waiting for the GIL, and while it waits, every system call
of the request thread or event loop releases the GIL and wakes it, mostly for
nothing: about 230 futex calls per 512-span export (``bench/export_syscalls.py``),
each a cross-core wake-up.  Measured under Gunicorn (``bench/pinned.py``), a
sync worker spent about 5% more CPU per request with the export thread than
with the same export made on the request thread itself.  But an export made on
the request thread waits for the collector, which a request must never do.

So the thread that fills a batch sends it itself, on a non-blocking kept-alive
connection (one ``send``: the kernel holds what the collector has not read), and
reads the answer the next time it fills a batch, again without blocking, by when
it has long arrived.  The export thread is needed for none of it and stays
asleep.  Everything that can wait is still the export thread's, with the SDK's
exporter (retries, backoff, ``Retry-After``, logging):

* the batch goes to the export thread instead, unchanged, when exports are not
  healthy (``export_health``), when no connection is ready (the export thread
  opens them, so no producer ever waits on ``connect`` or DNS), when
  ``max_in_flight`` sends are still unanswered, when the body cannot be built
  here (``FastOTLPSpanExporter.lane_body``: an encoding error, a body over
  ``max_request_size``), or when another producer is using the sender;
* an answer other than 2xx/3xx, a connection closed or reset before an answer,
  or a send that fails: the batch goes to the export thread, whose SDK exporter
  sends it again and retries as it always does (one attempt more than the SDK
  alone would make; the SDK itself re-sends at once after a connection error);
* no answer within the exporter's timeout: the batch is counted as failed, as the
  SDK's exporter would count it, and logged through the same limiter;
* answers nobody has read yet are read by the export thread when it wakes
  (``OTEL_BSP_SCHEDULE_DELAY``, a flush, a shutdown), blocking there if needed.

What goes on the wire is byte for byte what ``http_transport.ExportTransport``
sends for the same export (the request is rendered by the same
``http.client`` code; ``tests/test_send_ahead.py``).  Only for plain ``http://``
routes that transport sends itself (no proxy, no netrc); anything else keeps
the export thread for every batch.

State has one owner at a time: producers take the lock without blocking (a
producer that finds it taken leaves the batch to the queue), and the export
thread takes a sent batch out of ``_in_flight`` before it blocks on its answer.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field

from gunicorn_otel._worker.http_transport import ExportTransport, Route, _OneSendConnection, direct_route

# What this module reads of the SDK's private ``_OTLPHTTPClient`` (``exporter._client``);
# without any of them, every batch stays the export thread's.
CLIENT_ATTRIBUTES = ("_endpoint", "_headers", "_timeout", "_compress", "_transport")
_SEND_BUFFER = 1 << 20  # a 512-span body is ~100 KiB: one non-blocking send takes it whole
_READ = 65536


class _Rendering(_OneSendConnection):
    """An ``HTTPConnection`` that renders a request to bytes instead of sending it."""

    rendered = b""

    def send(self, data) -> None:
        self.rendered += data


def render(route: Route, headers: dict, body: bytes) -> bytes:
    """The bytes ``ExportTransport`` puts on the wire for a POST of ``body`` to ``route``."""
    conn = _Rendering(route.host, route.port)
    conn.request("POST", route.target, body=body, headers=headers)
    return conn.rendered


@dataclass
class _Sent:
    """One batch sent and not yet answered."""

    conn: socket.socket
    batch: list
    token: int  # ExportHealth token
    deadline: float
    unsent: bytes = b""
    received: bytearray = field(default_factory=bytearray)


class _Answer:
    """What a response said, once its head (and, if reusable, its body) is in."""

    __slots__ = ("status", "reason", "reusable")

    def __init__(self, status: int, reason: str, reusable: bool) -> None:
        self.status = status
        self.reason = reason
        self.reusable = reusable


def _parse(received: bytearray, eof: bool) -> _Answer | None:
    """The answer in ``received``, or None while more is needed.

    Only the status decides the outcome, as in the SDK, but the body is read
    as ``http.client`` reads it: to its ``Content-Length``, or to the close of
    the connection when there is none.  Raises ``ConnectionError`` for a
    connection closed before a status line (the SDK retries that) and
    ``BodyCutShort`` for one closed inside the body (the SDK does not).  A
    chunked body is not read: its status decides and the connection is closed.
    """
    head_end = received.find(b"\r\n\r\n")
    if head_end < 0:
        if eof:
            raise ConnectionError("connection closed before an answer")
        return None
    lines = bytes(received[:head_end]).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(code)
    length = None
    chunked = False
    reusable = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length" and value.strip().isdigit():
            length = int(value.strip())
        elif name == "transfer-encoding":
            chunked = True
        elif name == "connection" and "close" in value.lower():
            reusable = False
    if chunked:
        return _Answer(status, reason, False)
    body = len(received) - head_end - 4
    if length is None:  # to the close of the connection
        return _Answer(status, reason, False) if eof else None
    if body < length:
        if eof:
            raise BodyCutShort(f"response body cut short: {body} of {length} bytes")
        return None
    return _Answer(status, reason, reusable and body == length)


class BodyCutShort(Exception):
    """The connection closed inside the body (``http_transport`` counts it failed, not retried)."""


class SendAhead:
    """The producers' side of a span batcher's exports; see the module docstring."""

    def __init__(self, exporter, route: Route, max_in_flight: int = 2) -> None:
        self.exporter = exporter  # CountingExporter over FastOTLPSpanExporter
        self.route = route
        self.max_in_flight = max_in_flight
        self.done = 0  # items whose outcome this sender counted (read by force_flush)
        self.sent = 0  # batches sent here (tests and benchmarks read it)
        self._lock = threading.Lock()
        self._done_lock = threading.Lock()
        self._idle: list[socket.socket] = []
        self._in_flight: list[_Sent] = []
        self._reading = 0  # sends the export thread took out to read
        self._closed = False

    @classmethod
    def for_exporter(cls, exporter) -> SendAhead | None:
        """A sender for ``exporter`` (a ``CountingExporter``), or None where only the export thread may send."""
        inner = getattr(exporter, "inner", None)
        client = getattr(inner, "_client", None)
        if client is None or getattr(inner, "lane_body", None) is None:
            return None
        if not all(hasattr(client, name) for name in CLIENT_ATTRIBUTES):
            return None
        if not isinstance(client._transport, ExportTransport):
            return None
        route = direct_route(client._endpoint)
        return cls(exporter, route) if route is not None else None

    @property
    def pending(self) -> int:
        """Sends not yet resolved (unanswered, or being read by the export thread)."""
        return len(self._in_flight) + self._reading

    # -- producers --------------------------------------------------------------------

    def pump(self, batcher) -> bool:
        """Read answers that arrived; send one full batch of ``batcher``'s if it may.  Never blocks.

        True if a batch was taken from the queue (sent, or handed to the export thread).
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._read_arrived(batcher)
            if (
                self._closed
                or not self._idle
                or len(self._in_flight) >= self.max_in_flight
                or not batcher.health.healthy()
            ):
                return False
            batch = batcher._take()
            if not batch:
                return False
            body = self.exporter.inner.lane_body(batch)
            if body is None:
                batcher.hand_over(batch)
                return True
            conn = self._idle.pop()
            client = self.exporter.inner._client
            sent = _Sent(
                conn,
                batch,
                batcher.health.begin(),
                time.monotonic() + client._timeout,
                render(self.route, client._headers, body),
            )
            self.sent += 1
            self._in_flight.append(sent)
            self._write(sent, batcher)
            return True
        finally:
            self._lock.release()

    def _write(self, sent: _Sent, batcher) -> None:
        try:
            n = sent.conn.send(sent.unsent)
        except BlockingIOError:
            return
        except OSError:
            self._in_flight.remove(sent)
            self._fail_over(sent, batcher)
            return
        sent.unsent = sent.unsent[n:]

    def _read_arrived(self, batcher) -> None:
        for sent in list(self._in_flight):
            if sent.unsent:
                self._write(sent, batcher)
                if sent.unsent or sent not in self._in_flight:
                    continue
            try:
                answer = self._receive(sent, wait=0.0)
            except BodyCutShort as error:
                self._in_flight.remove(sent)
                sent.conn.close()
                self._count(sent, batcher, False, str(error))
                continue
            except OSError:
                self._in_flight.remove(sent)
                self._fail_over(sent, batcher)
                continue
            if answer is not None:
                self._in_flight.remove(sent)
                self._resolve(sent, answer, batcher)

    # -- the export thread -------------------------------------------------------------

    def settle(self, batcher) -> None:
        """In the export thread: read every outstanding answer (blocking), then open connections."""
        while True:
            with self._lock:
                if not self._in_flight:
                    break
                sent = self._in_flight.pop(0)
                self._reading += 1
            try:
                self._finish(sent, batcher)
            finally:
                with self._lock:
                    self._reading -= 1
        self._open_connections()

    def _finish(self, sent: _Sent, batcher) -> None:
        try:
            while sent.unsent:
                remaining = sent.deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                _wait(sent.conn, select.POLLOUT, remaining)
                try:
                    sent.unsent = sent.unsent[sent.conn.send(sent.unsent) :]
                except BlockingIOError:
                    pass
            while True:
                remaining = sent.deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                answer = self._receive(sent, wait=remaining)
                if answer is not None:
                    break
        except TimeoutError:
            sent.conn.close()
            self._count(sent, batcher, False, f"no answer within {self.exporter.inner._client._timeout:g}s")
            return
        except BodyCutShort as error:
            sent.conn.close()
            self._count(sent, batcher, False, str(error))
            return
        except OSError:
            self._fail_over(sent, batcher)
            return
        self._resolve(sent, answer, batcher)

    def _open_connections(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._idle) + self.pending >= self.max_in_flight:
                    return
            try:
                conn = socket.create_connection(
                    (self.route.host, self.route.port), self.exporter.inner._client._timeout
                )
            except OSError:
                return  # the SDK's exporter reports an unreachable collector; try again next time
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
            conn.setblocking(False)
            self._idle.append(conn)
            if self._closed:
                self._close_idle()
                return

    def close(self) -> None:
        self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    # -- outcomes ---------------------------------------------------------------------

    def _receive(self, sent: _Sent, wait: float) -> _Answer | None:
        if wait > 0:
            _wait(sent.conn, select.POLLIN, wait)
        try:
            chunk = sent.conn.recv(_READ)
        except BlockingIOError:
            return None
        sent.received += chunk
        return _parse(sent.received, eof=not chunk)

    def _resolve(self, sent: _Sent, answer: _Answer, batcher) -> None:
        if answer.reusable and not self._closed:
            self._idle.append(sent.conn)  # atomic under the GIL; the caller may or may not hold the lock
            if self._closed:  # close() ran meanwhile: nothing may stay open
                self._close_idle()
        else:
            sent.conn.close()
        if 200 <= answer.status < 400:
            self._count(sent, batcher, True)
        else:
            self._fail_over(sent, batcher, close=False)

    def _fail_over(self, sent: _Sent, batcher, close: bool = True) -> None:
        """Leave the batch to the export thread's SDK exporter (which sends it again, with retries)."""
        if close:
            sent.conn.close()
        batcher.health.end(sent.token, False)
        batcher.hand_over(sent.batch)

    def _count(self, sent: _Sent, batcher, ok: bool, reason: str | None = None) -> None:
        batcher.health.end(sent.token, ok)
        self.exporter.record(len(sent.batch), ok, reason)
        with self._done_lock:  # producers and the export thread both count
            self.done += len(sent.batch)


def _wait(conn: socket.socket, event: int, timeout: float) -> None:
    poller = select.poll()
    poller.register(conn, event)
    if not poller.poll(max(timeout, 0.0) * 1000):
        raise TimeoutError
