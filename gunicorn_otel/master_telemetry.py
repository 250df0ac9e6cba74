"""Telemetry about the Gunicorn master itself: worker boots, exits, timeouts, reloads, count.

Why not an SDK ``MeterProvider`` in the master?  Everything the SDK builds is
inherited by every worker the master forks: its batch processors and metric
reader start a new thread in each child from an at-fork hook, the providers
re-run resource detection inside ``fork``, counters would carry the master's
values into the workers, and a global provider set here would block the
workers' own.  So the master keeps no SDK object at all:

* hooks only append an event to a deque (never block the arbiter);
* one daemon thread, started in ``when_ready``, turns events into cumulative
  counters and log records and POSTs them as OTLP/HTTP protobuf (built with
  ``opentelemetry-proto``) with a short timeout;
* ``os.register_at_fork(after_in_child=...)`` drops the whole object in each
  worker, which never touches it.

Exit reasons come from what the arbiter logs, since ``child_exit`` gets no
wait status: "Worker (pid:N) exited with code C", "... was sent SIGNAL!" and
"WORKER TIMEOUT (pid:N)" are read from ``gunicorn.error`` records' arguments.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import urllib.parse

# Imported here, in the master, before the export thread starts: a thread that
# imports a module while the arbiter forks leaves the module's import lock held
# in the child, and the worker deadlocks on its next import of it.
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2 as lg
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

log = logging.getLogger("gunicorn_otel")

_current: "MasterTelemetry | None" = None


def _drop_in_child() -> None:
    global _current
    _current = None


os.register_at_fork(after_in_child=_drop_in_child)


class _ArbiterRecords(logging.Handler):
    """Reads exit codes, signals and timeouts from the arbiter's own log records."""

    def __init__(self, telemetry: "MasterTelemetry") -> None:
        super().__init__(logging.DEBUG)
        self.telemetry = telemetry

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self.telemetry.pid or not isinstance(record.args, tuple):
            return
        msg = str(record.msg)
        if msg.startswith("Worker (pid:%s) exited with code") and len(record.args) >= 2:
            self.telemetry.reasons.setdefault(record.args[0], f"exit_code_{record.args[1]}")
        elif msg.startswith("Worker (pid:%s) was sent") and len(record.args) >= 2:
            self.telemetry.reasons.setdefault(record.args[0], f"signal_{record.args[1]}")
        elif msg.startswith("WORKER TIMEOUT") and record.args:
            self.telemetry.reasons[record.args[0]] = "timeout"
            self.telemetry.event("timeout", pid=record.args[0])


class MasterTelemetry:
    def __init__(self, settings, arbiter) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.arbiter = arbiter
        self.events: collections.deque = collections.deque(maxlen=10000)
        self.counters: dict[tuple, int] = collections.Counter()
        self.reasons: dict[int, str] = {}
        self.initial_boots = arbiter.num_workers
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="gunicorn-otel-master", daemon=True)
        self._records = _ArbiterRecords(self)
        self.interval = min(settings.metric_interval, 10.0)
        self.start_ns = time.time_ns()
        self.dropped = 0

    # -- called from hooks, in the arbiter's thread: append only -----------

    def event(self, name: str, **attributes) -> None:
        self.events.append((time.time_ns(), name, attributes))
        if name != "boot":
            self._wake.set()

    def start(self) -> None:
        logging.getLogger("gunicorn.error").addHandler(self._records)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        logging.getLogger("gunicorn.error").removeHandler(self._records)

    # -- the export thread ---------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._export_once()
        self._export_once()

    def _export_once(self) -> None:
        records = []
        while self.events:
            stamp, name, attrs = self.events.popleft()
            if name == "exit":
                attrs = {**attrs, "reason": self.reasons.pop(attrs["pid"], "exit_code_0")}
            key = (name, tuple(sorted((k, str(v)) for k, v in attrs.items() if k != "pid")))
            self.counters[key] += 1
            records.append((stamp, name, attrs))
        try:
            if self.settings.logs.kind == "otlp" and records:
                self._post(self.settings.logs, self._logs_body(records))
            if self.settings.metrics.kind == "otlp":
                self._post(self.settings.metrics, self._metrics_body())
        except Exception as exc:  # noqa: BLE001 - the master must never fail because of telemetry
            self.dropped += len(records)
            log.warning("gunicorn-otel: master telemetry export to %s failed: %s", self.settings.metrics.endpoint, exc)

    def _post(self, options, body: bytes) -> None:
        """POST one OTLP/HTTP request with a hard timeout.

        Plain ``http://`` goes over a bare socket: ``urllib``/``http.client``
        import ``ssl``, and ``ssl`` imported in the master makes gevent warn in
        every worker forked afterwards.  ``https://`` needs ``ssl`` anyway.
        """
        parsed = urllib.parse.urlsplit(options.endpoint)
        timeout = min(options.timeout, 5.0)
        if parsed.scheme == "https":
            _post_https(parsed, body, options, timeout)
            return
        host, port = parsed.hostname, parsed.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in options.headers.items())
        head = (
            f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n"
        )
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(head.encode("latin-1") + body)
            status = sock.makefile("rb").readline().split()
        if len(status) < 2 or not status[1].startswith(b"2"):
            raise OSError(f"collector answered {b' '.join(status[1:]).decode(errors='replace') or 'nothing'}")

    # -- OTLP bodies ---------------------------------------------------------

    def _resource(self):
        attributes = dict(self.settings.resource_attributes)
        attributes["service.name"] = self.settings.service_name or attributes.get("service.name", "unknown_service")
        attributes["gunicorn.role"] = "master"
        attributes["process.pid"] = self.pid
        return Resource(attributes=[KeyValue(key=k, value=_any(v)) for k, v in attributes.items()])

    def _metrics_body(self) -> bytes:
        now = time.time_ns()
        names = {"boot": "gunicorn.master.worker.boots", "exit": "gunicorn.master.worker.exits",
                 "timeout": "gunicorn.master.worker.timeouts", "reload": "gunicorn.master.reloads"}
        metrics = []
        for event, metric_name in names.items():
            points = [
                m.NumberDataPoint(
                    start_time_unix_nano=self.start_ns, time_unix_nano=now, as_int=count,
                    attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs],
                )
                for (name, attrs), count in self.counters.items() if name == event
            ]
            if points:
                metrics.append(m.Metric(name=metric_name, unit="{event}", sum=m.Sum(
                    data_points=points, is_monotonic=True,
                    aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE)))
        metrics.append(m.Metric(name="gunicorn.master.workers", unit="{worker}", gauge=m.Gauge(
            data_points=[m.NumberDataPoint(time_unix_nano=now, as_int=len(self.arbiter.WORKERS))])))
        request = ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
            resource=self._resource(),
            scope_metrics=[m.ScopeMetrics(scope=InstrumentationScope(name="gunicorn_otel.master"), metrics=metrics)],
        )])
        return request.SerializeToString()

    def _logs_body(self, records) -> bytes:
        items = []
        for stamp, name, attrs in records:
            warn = name in ("timeout",) or (name == "exit" and attrs.get("reason") not in ("exit_code_0", "signal_SIGTERM"))
            who = f"worker {attrs['pid']}" if "pid" in attrs else f"worker slot {attrs['slot']}" if "slot" in attrs else "workers"
            body = f"{who} {name}" + (f": {attrs['reason']}" if "reason" in attrs else "")
            items.append(lg.LogRecord(
                time_unix_nano=stamp, observed_time_unix_nano=stamp,
                severity_number=lg.SEVERITY_NUMBER_WARN if warn else lg.SEVERITY_NUMBER_INFO,
                severity_text="WARN" if warn else "INFO",
                body=AnyValue(string_value=body), event_name=f"gunicorn.worker.{name}",
                attributes=[KeyValue(key=f"gunicorn.{k}", value=_any(v)) for k, v in attrs.items()],
            ))
        request = ExportLogsServiceRequest(resource_logs=[lg.ResourceLogs(
            resource=self._resource(),
            scope_logs=[lg.ScopeLogs(scope=InstrumentationScope(name="gunicorn_otel.master"), log_records=items)],
        )])
        return request.SerializeToString()


def _post_https(parsed, body: bytes, options, timeout: float) -> None:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=options.certificate)
    if options.client_certificate:
        context.load_cert_chain(options.client_certificate, options.client_key)
    conn = http.client.HTTPSConnection(parsed.hostname, parsed.port or 443, timeout=timeout, context=context)
    try:
        conn.request("POST", parsed.path or "/", body,
                     {"Content-Type": "application/x-protobuf", **options.headers})
        response = conn.getresponse()
        response.read()
        if response.status >= 300:
            raise OSError(f"collector answered {response.status}")
    finally:
        conn.close()


def _any(value):
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


# -- what the hooks call --------------------------------------------------------


def when_ready(server, settings) -> None:
    global _current
    if settings.disabled or not settings.master_telemetry:
        return
    if settings.metrics.kind != "otlp" and settings.logs.kind != "otlp":
        return
    if "grpc" in (settings.metrics.protocol, settings.logs.protocol):
        log.info("gunicorn-otel: master telemetry is sent over OTLP/HTTP only; off with gRPC")
        return
    # Everything the export thread will need is imported now, in the arbiter's
    # thread (see the imports at the top for why).
    "localhost".encode("idna")
    if any(settings.exporting(s).endpoint and settings.exporting(s).endpoint.startswith("https")
           for s in ("metrics", "logs")):
        import http.client  # noqa: F401
        import ssl  # noqa: F401
    _current = MasterTelemetry(settings, server)
    _current.start()


def record(name: str, **attributes) -> None:
    current = _current
    if current is not None and current.pid == os.getpid():
        current.event(name, **attributes)


def on_exit(timeout: float) -> None:
    current = _current
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)
