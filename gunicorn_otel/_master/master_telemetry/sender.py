"""The master's export thread and its HTTP client: POSTs OTLP/HTTP protobuf with a hard timeout.

One daemon thread, started in ``when_ready``, sends a burst of events (a
reload, a crash loop) in one request, and the counters every metric
interval.  Hooks never wait on it: they only set ``wake()``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# A burst of events (a reload, a crash loop) shares one request.
BATCH_SECONDS = 0.2
MAX_POST_SECONDS = 5.0

# What to send now: (signal, a function building its body) pairs.
Batches = Callable[[], list[tuple[str, Callable[[], bytes]]]]

_gzip: Any = None
_zlib: Any = None


def prepare(targets: dict) -> None:
    """Import everything the export thread uses, now, in the arbiter's thread, before it starts.

    A thread that imports a module while the arbiter forks leaves that
    module's import lock held in the child, and the worker deadlocks on its
    next import of it.
    """
    global _gzip, _zlib
    import gzip
    import zlib

    _gzip, _zlib = gzip, zlib
    "localhost".encode("idna")  # socket.create_connection's codec for host names
    if any(urllib.parse.urlsplit(o.endpoint).scheme == "https" for o in targets.values()):
        import http.client  # noqa: F401
        import ssl  # noqa: F401


class Sender:
    """The export thread; ``batches`` is called in it to collect what to send."""

    def __init__(self, targets: dict, interval: float, batches: Batches) -> None:
        self.targets = targets  # signal ("metrics", "logs") -> Exporting, OTLP/HTTP only
        self.interval = interval
        self.batches = batches
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gunicorn-otel-master", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Final export, waited for at most ``timeout`` s; a stuck POST is left to the daemon thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        # The first export waits for the initial workers (forked 0-100 ms apart).
        next_metrics = time.monotonic() + min(self.interval, 1.0)
        while not self._stopping.is_set():
            woken = self._wake.wait(max(0.0, next_metrics - time.monotonic()))
            self._wake.clear()
            if woken and not self._stopping.is_set():
                self._stopping.wait(BATCH_SECONDS)
            if self._stopping.is_set():
                break
            self._export()
            next_metrics = time.monotonic() + self.interval
        self._export()

    def _export(self) -> None:
        for signal, body in self.batches():  # records that fail to send are dropped
            self._send(signal, body)

    def _send(self, signal: str, body: Callable[[], bytes]) -> None:
        options = self.targets.get(signal)
        if options is None:
            return
        try:
            post(options, body())
        except Exception as exc:  # noqa: BLE001 - the master must never fail because of telemetry
            if not self._failing:
                log.warning(
                    "gunicorn-otel: master telemetry export to %s failed: %s "
                    "(further failures are logged at debug level)",
                    options.endpoint,
                    exc,
                )
            else:
                log.debug("gunicorn-otel: master telemetry export to %s failed: %s", options.endpoint, exc)
            self._failing = True
            return
        if self._failing:
            log.warning("gunicorn-otel: master telemetry export to %s works again", options.endpoint)
            self._failing = False


def post(options: Any, body: bytes) -> None:
    """POST one OTLP/HTTP protobuf request with a hard timeout.

    Plain ``http://`` goes over a bare socket: ``urllib`` and ``http.client``
    import ``ssl``, and ``ssl`` imported in the master makes gevent warn in
    every worker forked afterwards.  ``https://`` needs ``ssl`` anyway.  Proxy
    variables are not honoured.
    """
    parsed = urllib.parse.urlsplit(options.endpoint)
    timeout = min(options.timeout, MAX_POST_SECONDS)
    headers = {"Content-Type": "application/x-protobuf", **options.headers}
    if options.compression == "gzip":
        body = _gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    elif options.compression == "deflate":
        body = _zlib.compress(body)
        headers["Content-Encoding"] = "deflate"
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    if parsed.scheme == "https":
        status = _post_https(parsed, target, body, headers, options, timeout)
    else:
        host_header = parsed.netloc.rpartition("@")[2]
        head = f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout) as sock:
            sock.sendall(head.encode("latin-1") + body)
            line = sock.makefile("rb").readline().split()
        status = int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0
    if not 200 <= status < 300:
        raise OSError(f"collector answered {status or 'nothing'}")


def _post_https(parsed: Any, target: str, body: bytes, headers: dict, options: Any, timeout: float) -> int:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=options.certificate)
    if options.client_certificate:
        context.load_cert_chain(options.client_certificate, options.client_key)
    conn = http.client.HTTPSConnection(parsed.hostname, parsed.port or 443, timeout=timeout, context=context)
    try:
        conn.request("POST", target, body, headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
