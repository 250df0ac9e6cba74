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
  opens them, so no producer ever waits on ``connect`` or DNS; an idle one the
  collector closed is found by a zero-timeout ``poll`` and dropped), when
  ``max_in_flight`` sends are still unanswered, when the body cannot be built
  here (``FastOTLPSpanExporter.lane_body``: an encoding error, a body over
  ``max_request_size``), or when another producer is using the sender;
  anything that goes wrong while sending hands the batch over too, and never
  reaches the request;
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
routes that transport sends itself (no proxy, no netrc) and without
compression (gzip costs milliseconds per batch, which no request or event
loop should pay); anything else keeps the export thread for every batch.

A send counts for ``export_health`` when it ends: a failure makes exports
unhealthy, and a success makes them healthy again only if its answer was read
within ``slow_after`` of the send (an answer may wait unread in the socket; a
late read says nothing about the collector).  A collector that stops answering
is found by the export thread's own exports: once ``max_in_flight`` sends are
unanswered, full batches go to it.

State has one owner at a time: producers take the lock without blocking (a
producer that finds it taken leaves the batch to the queue), and the export
thread takes a sent batch out of ``_in_flight`` before it blocks on its answer.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from gunicorn_otel._worker.http_transport import ExportTransport, Route, _OneSendConnection, direct_route

log = logging.getLogger(__name__)

# What this module reads of the SDK's private ``_OTLPHTTPClient`` (``exporter._client``);
# without any of them, every batch stays the export thread's.
CLIENT_ATTRIBUTES = ("_endpoint", "_headers", "_timeout", "_compress", "_transport")
# A 512-span body is ~100 KiB: with this send buffer (the kernel caps it at
# net.core.wmem_max) one non-blocking send usually takes it whole; the rest,
# if any, goes out at the next look.
_SEND_BUFFER = 1 << 20
_READ = 65536
_CONNECT_TIMEOUT = 2.0  # seconds the export thread may spend opening one connection
_RECONNECT_AFTER = 10.0  # seconds between attempts once connecting failed
_LONGEST_WAIT = 3600.0  # one poll; the deadline is checked again after it


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
    sent_at: float
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


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _parse(received: bytearray, eof: bool) -> _Answer | None:
    """The answer in ``received``, or None while more is needed.

    Only the status decides the outcome, as in the SDK, but the body is read
    as ``http.client`` reads it: to its ``Content-Length``, none for 1xx, 204
    and 304, or to the close of the connection when there is no length.
    Interim 1xx answers are skipped.  Raises ``ConnectionError`` for a
    connection closed before a status line (the SDK retries that) and
    ``BodyCutShort`` for one closed inside the body (the SDK does not).  A
    chunked body is not read: its status decides and the connection is closed.
    """
    while True:
        head_end = received.find(b"\r\n\r\n")
        if head_end < 0:
            if eof:
                raise ConnectionError("connection closed before an answer")
            return None
        lines = bytes(received[:head_end]).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        status = _number(code)
        if not version.startswith("HTTP/") or status is None:
            raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
        if 100 <= status < 200:  # interim (100 Continue): the answer follows
            del received[: head_end + 4]
            continue
        break
    length = 0 if status in (204, 304) else None
    chunked = False
    reusable = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length" and length is None:
            length = _number(value)
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
        self.sent = 0  # batches sent here (tests and benchmarks read it)
        self._lock = threading.Lock()
        self._idle: list[tuple[socket.socket, float]] = []  # (connection, idle since)
        self._in_flight: list[_Sent] = []
        self._reading = 0  # sends the export thread took out to read
        self._closed = False
        self._connect_failed_at: float | None = None

    @classmethod
    def for_exporter(cls, exporter) -> SendAhead | None:
        """A sender for ``exporter`` (a ``CountingExporter``), or None where only the export thread may send.

        Not with compression: gzip of a batch costs milliseconds, which the
        request (or the whole event loop) that filled it must not pay.
        """
        inner = getattr(exporter, "inner", None)
        client = getattr(inner, "_client", None)
        if client is None or getattr(inner, "lane_body", None) is None:
            return None
        if not all(hasattr(client, name) for name in CLIENT_ATTRIBUTES):
            return None
        if not isinstance(client._transport, ExportTransport):
            return None
        if getattr(getattr(client, "_compression", None), "value", "none") != "none":
            return None
        route = direct_route(client._endpoint)
        if route is None:
            return None
        try:  # a header http.client refuses: leave every batch to the SDK exporter, which reports it
            render(route, client._headers, b"")
        except Exception:  # noqa: BLE001
            return None
        return cls(exporter, route)

    @property
    def pending(self) -> int:
        """Sends not yet resolved (unanswered, or being read by the export thread)."""
        return len(self._in_flight) + self._reading

    # -- producers --------------------------------------------------------------------

    def pump(self, batcher) -> bool:
        """Read answers that arrived; send one full batch of ``batcher``'s if it may.  Never blocks.

        True if a batch was taken from the queue (sent, or handed to the export
        thread).  Nothing here raises into the request: a failure hands the
        batch to the export thread.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            try:
                self._read_arrived(batcher)
            except Exception:
                log.debug("gunicorn-otel: reading answers failed", exc_info=True)
            if self._closed or len(self._in_flight) >= self.max_in_flight or not batcher.health.healthy():
                return False
            conn = self._idle_connection()
            if conn is None:
                return False
            batch = batcher._take()
            if not batch:
                self._idle.append((conn, time.monotonic()))
                return False
            try:
                self._send(conn, batch, batcher)
            except Exception:
                log.debug("gunicorn-otel: send-ahead failed; the export thread sends the batch", exc_info=True)
                conn.close()
                batcher.hand_over(batch)
            return True
        finally:
            self._lock.release()

    def _idle_connection(self) -> socket.socket | None:
        """An idle connection the collector has not closed meanwhile (checked with a zero-timeout poll)."""
        while self._idle:
            conn, _ = self._idle.pop()
            poller = select.poll()
            poller.register(conn, select.POLLIN)
            if not poller.poll(0):  # an idle HTTP/1.1 connection has nothing to read unless it is closing
                return conn
            conn.close()
        return None

    def _send(self, conn: socket.socket, batch: list, batcher) -> None:
        body = self.exporter.inner.lane_body(batch)
        if body is None:
            self._idle.append((conn, time.monotonic()))
            batcher.hand_over(batch)
            return
        client = self.exporter.inner._client
        data = render(self.route, client._headers, body)
        now = time.monotonic()
        sent = _Sent(conn, batch, now, now + client._timeout, data)
        self._in_flight.append(sent)
        self.sent += 1
        self._write(sent, batcher)

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
                if sent not in self._in_flight:
                    continue
            try:
                answer = self._receive(sent)
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
        """In the export thread: read the answers outstanding now (blocking, each to its deadline)."""
        with self._lock:
            taken, self._in_flight = self._in_flight, []
            self._reading += len(taken)
        for sent in taken:
            try:
                self._finish(sent, batcher)
            except Exception:
                log.debug("gunicorn-otel: reading an answer failed", exc_info=True)
                self._fail_over(sent, batcher)
            finally:
                with self._lock:
                    self._reading -= 1

    def _finish(self, sent: _Sent, batcher) -> None:
        """Send what is left and read the answer; the deadline bounds only the waiting."""
        try:
            while sent.unsent:
                try:
                    sent.unsent = sent.unsent[sent.conn.send(sent.unsent) :]
                except BlockingIOError:
                    pass
                if not sent.unsent:
                    break
                # An answer before the whole body (413, 429, 503) is read, as urllib3 reads it.
                if _wait(sent.conn, select.POLLOUT | select.POLLIN, sent.deadline) & select.POLLIN:
                    break
            while True:
                answer = self._receive(sent)  # what already arrived counts, whatever the clock says
                if answer is not None:
                    break
                _wait(sent.conn, select.POLLIN, sent.deadline)
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
        if sent.unsent:
            answer.reusable = False  # the rest of the body is still unsent
        self._resolve(sent, answer, batcher)

    def open_connections(self) -> None:
        """In the export thread: keep ``max_in_flight`` connections; after a failure, try again 10 s later."""
        while True:
            with self._lock:
                if self._closed or len(self._idle) + self.pending >= self.max_in_flight:
                    return
            failed_at = self._connect_failed_at
            if failed_at is not None and time.monotonic() - failed_at < _RECONNECT_AFTER:
                return
            timeout = min(self.exporter.inner._client._timeout, _CONNECT_TIMEOUT)
            try:
                conn = socket.create_connection((self.route.host, self.route.port), timeout)
            except OSError:
                self._connect_failed_at = time.monotonic()
                return  # the SDK's exporter reports an unreachable collector
            self._connect_failed_at = None
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
                conn.setblocking(False)
            except OSError:
                conn.close()
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._idle.append((conn, time.monotonic()))

    def close(self) -> None:
        """No more sends; close idle connections and those of sends nobody reads any more."""
        with self._lock:
            self._closed = True
            for conn, _ in self._idle:
                conn.close()
            self._idle.clear()
            for sent in self._in_flight:
                sent.conn.close()

    # -- outcomes ---------------------------------------------------------------------

    def _receive(self, sent: _Sent) -> _Answer | None:
        try:
            chunk = sent.conn.recv(_READ)
        except BlockingIOError:
            return None
        sent.received += chunk
        return _parse(sent.received, eof=not chunk)

    def _resolve(self, sent: _Sent, answer: _Answer, batcher) -> None:
        if answer.reusable and not self._closed:
            self._idle.append((sent.conn, time.monotonic()))  # atomic under the GIL, lock held or not
            if self._closed:  # close() ran meanwhile: nothing may stay open
                sent.conn.close()
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
        batcher.health.outcome(False, prompt=False)
        batcher.hand_over(sent.batch)

    def _count(self, sent: _Sent, batcher, ok: bool, reason: str | None = None) -> None:
        # The answer may have waited unread in the socket: only one read within
        # ``slow_after`` of the send says the collector is prompt.  A late read
        # of a success says nothing either way.
        prompt = time.monotonic() - sent.sent_at < batcher.health.slow_after
        if not ok or prompt:
            batcher.health.outcome(ok, prompt)
        self.exporter.record(len(sent.batch), ok, reason)
        batcher.resolved(sent.batch)


def _wait(conn: socket.socket, events: int, deadline: float) -> int:
    """Wait for ``events`` on ``conn`` until ``deadline`` (monotonic); the events seen, or TimeoutError."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    poller = select.poll()
    poller.register(conn, events)
    ready = poller.poll(min(remaining, _LONGEST_WAIT) * 1000)
    if not ready:
        if deadline - time.monotonic() <= 0:
            raise TimeoutError
        return 0
    return ready[0][1]
