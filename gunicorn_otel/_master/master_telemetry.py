"""Telemetry about the Gunicorn master itself: worker boots, exits, timeouts, reloads, count.

Why not an SDK ``MeterProvider`` in the master?  Everything the SDK builds is
inherited by every worker the master forks: its batch processors and metric
reader start a new thread in each child from an at-fork hook, the providers
re-run resource detection inside ``fork``, counters would carry the master's
values into the workers, and a global provider set here would block the
workers' own (the set-once flag is process memory).  So the master keeps no
SDK object at all:

* hooks run in the arbiter's thread and only count and append, under a lock
  that is never held across I/O: they never wait on the network;
* one daemon thread, started in ``when_ready``, POSTs cumulative counters, a
  worker-count gauge and one log record per event as OTLP/HTTP protobuf
  (built with ``opentelemetry-proto``) with a short timeout;
* an after-fork callback (``forksafe``) drops the whole object, and the
  logging handler below, in every child, which never touches them.

Why a worker exited comes in two parts:

* ``reason`` is the wait status.  ``child_exit`` gets no status, but
  ``Arbiter.reap_workers`` logs it on ``gunicorn.error`` just before calling
  the hook ("Worker (pid:N) exited with code C", "Worker (pid:N) was sent
  SIG!"); a handler reads the record's arguments.  Exit code 0 is not logged,
  and a death by SIGTERM is logged at INFO, so with ``--log-level warning`` or
  higher such a worker reads as ``exit_code_0``.
* ``cause`` is what the arbiter was doing: ``shutdown`` (``Arbiter.stop`` has
  emptied ``LISTENERS``), ``reload`` (the worker was running when
  ``on_reload`` fired; the arbiter then retires every old worker),
  ``scale_down`` (the arbiter still has ``num_workers`` without it: TTOU or a
  surplus it killed), ``timeout`` (``murder_workers`` set ``worker.aborted``),
  else ``max_requests`` for a clean exit when ``max_requests`` is set,
  ``voluntary`` for another clean exit, ``crash`` for the rest.  A worker that
  fails to boot (exit code 3 or 4) halts the arbiter without ``child_exit``;
  its record is made from the log line (``boot_failed``, ``app_load_failed``).
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
import urllib.parse
import uuid

from gunicorn_otel import __version__
from gunicorn_otel._master import forksafe, slots

log = logging.getLogger(__name__)

# gunicorn/arbiter.py: Arbiter.WORKER_BOOT_ERROR and APP_LOAD_ERROR.
_HALTING_EXIT_CODES = {3: "boot_failed", 4: "app_load_failed"}
# A burst of events (a reload, a crash loop) shares one request.
_BATCH_SECONDS = 0.2
_MAX_RECORDS = 1000
_MAX_POST_SECONDS = 5.0

_current: "MasterTelemetry | None" = None


@forksafe.register
def _drop_in_child() -> None:
    """Runs inside ``fork`` in every child (worker, dirty arbiter, USR2 re-exec)."""
    global _current
    current, _current = _current, None
    if current is not None:
        # logging's own after-fork hook (registered when logging was imported,
        # so before forksafe's) has already reset the module lock taken here.
        logging.getLogger("gunicorn.error").removeHandler(current.arbiter_records)


class _ArbiterRecords(logging.Handler):
    """Reads exit statuses and timeouts from the arbiter's own log records."""

    def __init__(self, telemetry: "MasterTelemetry") -> None:
        super().__init__(logging.DEBUG)
        self.telemetry = telemetry

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if forksafe.pid() != self.telemetry.pid or not isinstance(args, tuple) or not args:
            return
        msg = str(record.msg)
        if msg.startswith("Worker (pid:%s) exited with code") and len(args) >= 2:
            self.telemetry.exit_status(args[0], f"exit_code_{args[1]}", exit_code=args[1])
        elif msg.startswith("Worker (pid:%s) was sent") and len(args) >= 2:
            self.telemetry.exit_status(args[0], f"signal_{args[1]}")
        elif msg.startswith("WORKER TIMEOUT"):
            self.telemetry.timed_out(args[0])


class MasterTelemetry:
    """State for the arbiter's telemetry; methods above ``_run`` run in the arbiter's thread."""

    def __init__(self, settings, arbiter, targets: dict) -> None:
        self.pid = forksafe.pid()
        self.instance_id = str(uuid.uuid4())
        self.settings = settings
        self.arbiter = arbiter
        self.targets = targets  # signal ("metrics", "logs") -> Exporting, OTLP/HTTP only
        self.interval = settings.metric.interval
        self.start_ns = time.time_ns()
        self.arbiter_records = _ArbiterRecords(self)
        self._lock = threading.Lock()  # counters and records; never held across I/O
        self._counters: collections.Counter = collections.Counter()
        self._records: collections.deque = collections.deque()
        # Arbiter-thread only:
        self._status: dict[int, tuple[str, object]] = {}  # pid -> (reason, exit code)
        self._timed_out: set[int] = set()
        self._retiring: set[int] = set()
        self._spawns = collections.deque(["initial"] * arbiter.num_workers)
        self._owed = 0  # unplanned exits not yet replaced
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gunicorn-otel-master", daemon=True)
        self._failing = False

    def start(self) -> None:
        logging.getLogger("gunicorn.error").addHandler(self.arbiter_records)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Final export, waited for at most ``timeout`` s; a stuck POST is left to the daemon thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        logging.getLogger("gunicorn.error").removeHandler(self.arbiter_records)

    # -- events, in the arbiter's thread ----------------------------------

    def spawning(self, slot) -> None:
        if self._spawns:
            cause = self._spawns.popleft()
        elif self._owed > 0:
            self._owed -= 1
            cause = "replacement"
        else:
            cause = "scale_up"
        self._event(
            "boot",
            {"gunicorn.worker.boot.cause": cause},
            {"gunicorn.worker.slot": slot},
            f"worker slot {slot} booting ({cause})",
        )

    def exited(self, pid: int, slot, aborted: bool = False) -> None:
        reason, code = self._status.pop(pid, ("exit_code_0", 0))
        timed_out = aborted or pid in self._timed_out
        self._timed_out.discard(pid)
        arbiter = self.arbiter
        if not arbiter.LISTENERS:
            cause = "shutdown"
        elif timed_out:
            cause = "timeout"
        elif pid in self._retiring:
            cause = "reload"
        elif len(arbiter.WORKERS) >= arbiter.num_workers:
            cause = "scale_down"
        elif reason == "exit_code_0":
            cause = "max_requests" if getattr(arbiter.cfg, "max_requests", 0) else "voluntary"
        else:
            cause = "crash"
        self._retiring.discard(pid)
        if cause not in ("shutdown", "reload", "scale_down"):
            self._owed += 1
        self._exit_event(pid, slot, reason, code, cause)

    def exit_status(self, pid: int, reason: str, exit_code=None) -> None:
        self._status[pid] = (reason, exit_code)
        cause = _HALTING_EXIT_CODES.get(exit_code)
        if cause is not None:
            # reap_workers raises HaltServer right after this line: no child_exit.
            self._status.pop(pid)
            self._exit_event(pid, None, reason, exit_code, cause)

    def timed_out(self, pid: int) -> None:
        self._timed_out.add(pid)
        self._event("timeout", {}, {"gunicorn.worker.pid": pid}, f"worker {pid} timed out (SIGABRT sent)")

    def reloading(self) -> None:
        self._retiring = set(self.arbiter.WORKERS)
        # Arbiter.reload spawns cfg.workers new workers right after on_reload.
        self._spawns = collections.deque(["reload"] * self.arbiter.num_workers)
        self._event("reload", {}, {}, "configuration reloaded (HUP); replacing all workers")

    def _exit_event(self, pid, slot, reason: str, code, cause: str) -> None:
        details = {"gunicorn.worker.pid": pid}
        if slot is not None:
            details["gunicorn.worker.slot"] = slot
        if isinstance(code, int):
            details["process.exit.code"] = code
        where = f"worker {pid}" + (f" (slot {slot})" if slot is not None else "")
        self._event(
            "exit",
            {"gunicorn.worker.exit.reason": reason, "gunicorn.worker.exit.cause": cause},
            details,
            f"{where} exited: {reason}, cause {cause}",
        )

    def _event(self, name: str, counted: dict, details: dict, body: str) -> None:
        """Count ``name`` by ``counted`` attributes; queue one log record with both."""
        stamp = time.time_ns()
        key = (name, tuple(sorted(counted.items())))
        with self._lock:
            self._counters[key] += 1
            if "logs" in self.targets:
                if len(self._records) >= _MAX_RECORDS:
                    self._records.popleft()  # a crash loop against a dead collector: keep the latest
                self._records.append((stamp, name, {**counted, **details}, body))
        if name != "boot":  # boots are routine; they go out with the next batch
            self._wake.set()

    # -- the export thread ------------------------------------------------

    def _run(self) -> None:
        # The first export waits for the initial workers (forked 0-100 ms apart).
        next_metrics = time.monotonic() + min(self.interval, 1.0)
        while not self._stopping.is_set():
            woken = self._wake.wait(max(0.0, next_metrics - time.monotonic()))
            self._wake.clear()
            if woken and not self._stopping.is_set():
                self._stopping.wait(_BATCH_SECONDS)
            if self._stopping.is_set():
                break
            self._export()
            next_metrics = time.monotonic() + self.interval
        self._export()

    def _export(self) -> None:
        with self._lock:
            records, self._records = list(self._records), collections.deque()
            counters = dict(self._counters)
        if records:
            self._send("logs", lambda: _logs_body(self, records))  # on failure they are dropped
        self._send("metrics", lambda: _metrics_body(self, counters))

    def _send(self, signal: str, body) -> None:
        options = self.targets.get(signal)
        if options is None:
            return
        try:
            _post(options, body())
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


# -- OTLP/HTTP -------------------------------------------------------------------


def _post(options, body: bytes) -> None:
    """POST one OTLP/HTTP protobuf request with a hard timeout.

    Plain ``http://`` goes over a bare socket: ``urllib`` and ``http.client``
    import ``ssl``, and ``ssl`` imported in the master makes gevent warn in
    every worker forked afterwards.  ``https://`` needs ``ssl`` anyway.  Proxy
    variables are not honoured.
    """
    parsed = urllib.parse.urlsplit(options.endpoint)
    timeout = min(options.timeout, _MAX_POST_SECONDS)
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


def _post_https(parsed, target: str, body: bytes, headers: dict, options, timeout: float) -> int:
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


def _kv(key: str, value):
    pb = _pb
    if isinstance(value, bool):
        any_value = pb.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = pb.AnyValue(int_value=value)
    else:
        any_value = pb.AnyValue(string_value=str(value))
    return pb.KeyValue(key=key, value=any_value)


def _resource(telemetry: MasterTelemetry):
    settings = telemetry.settings
    attributes = dict(settings.resource_attributes)
    attributes["service.name"] = settings.service_name_resolved()
    attributes["service.instance.id"] = telemetry.instance_id
    attributes["gunicorn.role"] = "master"
    attributes["process.pid"] = telemetry.pid
    return _pb.Resource(attributes=[_kv(k, v) for k, v in attributes.items()])


def _scope():
    return _pb.InstrumentationScope(name="gunicorn_otel.master", version=__version__)


_METRIC_NAMES = {
    "boot": ("gunicorn.master.worker.boots", "Workers the master forked, by why it forked them"),
    "exit": ("gunicorn.master.worker.exits", "Workers the master reaped, by exit status and cause"),
    "timeout": ("gunicorn.master.worker.timeouts", "Workers the master aborted for missing their heartbeat"),
    "reload": ("gunicorn.master.reloads", "Configuration reloads (HUP)"),
}


def _metrics_body(telemetry: MasterTelemetry, counters: dict) -> bytes:
    pb = _pb
    now = time.time_ns()

    def counter(name: str, description: str, unit: str, points) -> object:
        data_points = [
            pb.NumberDataPoint(
                start_time_unix_nano=telemetry.start_ns,
                time_unix_nano=now,
                as_int=value,
                attributes=[_kv(k, v) for k, v in attributes],
            )
            for attributes, value in points
        ]
        return pb.Metric(
            name=name,
            description=description,
            unit=unit,
            sum=pb.Sum(
                data_points=data_points,
                is_monotonic=True,
                aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
            ),
        )

    metrics = []
    for event, (name, description) in _METRIC_NAMES.items():
        points = [(attributes, count) for (e, attributes), count in counters.items() if e == event]
        if points:
            metrics.append(counter(name, description, "{event}" if event == "reload" else "{worker}", points))
    metrics.append(
        pb.Metric(
            name="gunicorn.master.workers",
            unit="{worker}",
            description="Worker processes the master has now",
            gauge=pb.Gauge(data_points=[pb.NumberDataPoint(time_unix_nano=now, as_int=len(telemetry.arbiter.WORKERS))]),
        )
    )
    request = pb.ExportMetricsServiceRequest(
        resource_metrics=[
            pb.ResourceMetrics(
                resource=_resource(telemetry),
                scope_metrics=[pb.ScopeMetrics(scope=_scope(), metrics=metrics)],
            )
        ]
    )
    return request.SerializeToString()


_WARNING_CAUSES = {"crash", "timeout", "boot_failed", "app_load_failed"}


def _logs_body(telemetry: MasterTelemetry, records) -> bytes:
    pb = _pb
    items = []
    for stamp, name, attributes, body in records:
        warn = name == "timeout" or attributes.get("gunicorn.worker.exit.cause") in _WARNING_CAUSES
        items.append(
            pb.LogRecord(
                time_unix_nano=stamp,
                observed_time_unix_nano=stamp,
                severity_number=pb.SEVERITY_NUMBER_WARN if warn else pb.SEVERITY_NUMBER_INFO,
                severity_text="WARN" if warn else "INFO",
                body=pb.AnyValue(string_value=body),
                event_name="gunicorn.master.reload" if name == "reload" else f"gunicorn.worker.{name}",
                attributes=[_kv(k, v) for k, v in attributes.items()],
            )
        )
    request = pb.ExportLogsServiceRequest(
        resource_logs=[
            pb.ResourceLogs(
                resource=_resource(telemetry),
                scope_logs=[pb.ScopeLogs(scope=_scope(), log_records=items)],
            )
        ]
    )
    return request.SerializeToString()


# -- imports for the export thread, done in the arbiter's thread ------------------

_pb = None
_gzip = None
_zlib = None


def _import_for_export_thread(targets: dict) -> None:
    """Import everything the export thread uses, now, before it starts.

    A thread that imports a module while the arbiter forks leaves that
    module's import lock held in the child, and the worker deadlocks on its
    next import of it.  Importing here also keeps protobuf out of a master
    that has master telemetry off.
    """
    global _pb, _gzip, _zlib
    import gzip
    import types
    import zlib

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    _pb = types.SimpleNamespace(
        ExportLogsServiceRequest=ExportLogsServiceRequest,
        ExportMetricsServiceRequest=ExportMetricsServiceRequest,
        AnyValue=common_pb2.AnyValue,
        KeyValue=common_pb2.KeyValue,
        InstrumentationScope=common_pb2.InstrumentationScope,
        Resource=Resource,
        LogRecord=logs_pb2.LogRecord,
        ResourceLogs=logs_pb2.ResourceLogs,
        ScopeLogs=logs_pb2.ScopeLogs,
        SEVERITY_NUMBER_WARN=logs_pb2.SEVERITY_NUMBER_WARN,
        SEVERITY_NUMBER_INFO=logs_pb2.SEVERITY_NUMBER_INFO,
        Metric=metrics_pb2.Metric,
        Sum=metrics_pb2.Sum,
        Gauge=metrics_pb2.Gauge,
        NumberDataPoint=metrics_pb2.NumberDataPoint,
        ResourceMetrics=metrics_pb2.ResourceMetrics,
        ScopeMetrics=metrics_pb2.ScopeMetrics,
        AGGREGATION_TEMPORALITY_CUMULATIVE=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
    )
    _gzip, _zlib = gzip, zlib
    "localhost".encode("idna")  # socket.create_connection's codec for host names
    if any(urllib.parse.urlsplit(o.endpoint).scheme == "https" for o in targets.values()):
        import http.client  # noqa: F401
        import ssl  # noqa: F401


def _targets(settings) -> dict:
    """Signals the master can send: OTLP over HTTP (it keeps no gRPC channel to fork with)."""
    return {
        signal: options
        for signal in ("metrics", "logs")
        if (options := settings.exporting(signal)).kind == "otlp" and options.protocol != "grpc"
    }


# -- what the hooks call (arbiter's thread) -------------------------------------------


def _mine() -> "MasterTelemetry | None":
    current = _current
    return current if current is not None and current.pid == forksafe.pid() else None


def when_ready(server, settings) -> None:
    """Start master telemetry unless telemetry or ``GUNICORN_OTEL_MASTER_TELEMETRY`` is off."""
    global _current
    if settings.disabled or not settings.master_telemetry or _mine() is not None:
        return
    targets = _targets(settings)
    if not targets:
        if any(settings.exporting(s).protocol == "grpc" for s in ("metrics", "logs")):
            log.info("gunicorn-otel: master telemetry is sent over OTLP/HTTP only; off with gRPC")
        return
    _import_for_export_thread(targets)
    _current = MasterTelemetry(settings, server, targets)
    _current.start()


def worker_spawning(server, worker) -> None:
    """``pre_fork``, after the worker got its slot."""
    current = _mine()
    if current is not None:
        current.spawning(slots.of(worker))


def worker_exited(server, worker) -> None:
    """``child_exit``."""
    current = _mine()
    if current is not None:
        current.exited(worker.pid, slots.of(worker), bool(getattr(worker, "aborted", False)))


def reloading(server) -> None:
    """``on_reload``: runs before the new workers are spawned and the old ones retired."""
    current = _mine()
    if current is not None:
        current.reloading()


def on_exit(timeout: float) -> None:
    """``on_exit``: one last export, waited for at most ``timeout`` seconds."""
    current = _mine()
    if current is not None:
        current.stop(timeout)
