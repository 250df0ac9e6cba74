"""Foreign OpenTelemetry pipelines built in a worker after ours, seen and named.

A library that builds its own ``TracerProvider`` and ``BatchSpanProcessor`` per
call (crewAI's ``Telemetry()`` before its v0.130.0 singleton fix, crewAI #2279)
adds one ``OtelBatchSpanRecordProcessor`` thread per call, and nothing stops it:
the SDK's processors end only on an explicit ``shutdown()``.

After the worker's runtime has set its providers, ``watch()`` wraps ``__init__``
of the SDK's providers, batch processors and periodic metric reader.  The
wrapper calls the original first and only then looks, so the library gets the
object it asked for, at the cost of one frame walk per construction (never on
a span or a record).  It logs one WARNING per creating call site (the first
frame outside the SDK), counts every instance, and exports
``gunicorn_otel.foreign_pipelines`` (created, by kind) and
``gunicorn_otel.worker.threads`` (this process's native threads).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import types

log = logging.getLogger(__name__)

# (module, class, what one instance costs)
WATCHED = (
    ("opentelemetry.sdk.trace", "TracerProvider", "its span processors"),
    ("opentelemetry.sdk.trace.export", "BatchSpanProcessor", "a thread per instance"),
    ("opentelemetry.sdk.metrics", "MeterProvider", "its metric readers"),
    ("opentelemetry.sdk.metrics.export", "PeriodicExportingMetricReader", "a thread per instance"),
    ("opentelemetry.sdk._logs", "LoggerProvider", "its log processors"),
    ("opentelemetry.sdk._logs.export", "BatchLogRecordProcessor", "a thread per instance"),
)

_REUSE = {
    "TracerProvider": "opentelemetry.trace.get_tracer_provider()",
    "BatchSpanProcessor": "opentelemetry.trace.get_tracer_provider()",
    "MeterProvider": "opentelemetry.metrics.get_meter_provider()",
    "PeriodicExportingMetricReader": "opentelemetry.metrics.get_meter_provider()",
    "LoggerProvider": "opentelemetry._logs.get_logger_provider()",
    "BatchLogRecordProcessor": "opentelemetry._logs.get_logger_provider()",
}

_SKIP_PREFIXES = (os.path.dirname(__file__),)


class Watcher:
    """The process's record of foreign pipelines; one per process."""

    def __init__(self, on_first=None) -> None:
        self.pid = os.getpid()
        self.counts: dict[str, int] = {}
        self.sites: dict[tuple[str, str], int] = {}  # (kind, "file:line") -> instances
        self._lock = threading.Lock()
        self._on_first = on_first or _warn
        self._originals: list[tuple[type, object]] = []

    def install(self) -> None:
        for module_name, class_name, cost in WATCHED:
            try:
                module = __import__(module_name, fromlist=[class_name])
                cls = getattr(module, class_name)
            except (ImportError, AttributeError):
                continue
            original = cls.__dict__.get("__init__")
            if original is None or getattr(original, "__gunicorn_otel_watch__", False):
                continue
            cls.__init__ = self._wrap(original, class_name, cost)
            self._originals.append((cls, original))

    def uninstall(self) -> None:
        for cls, original in self._originals:
            cls.__init__ = original  # type: ignore[misc]
        self._originals.clear()

    def _wrap(self, original, kind: str, cost: str):
        watcher = self

        @functools.wraps(original)
        def __init__(obj, *args, **kwargs):
            original(obj, *args, **kwargs)
            # Only the outermost SDK class counts (a subclass's super().__init__,
            # a provider building its own default objects).
            if type(obj).__init__ is not __init__ and _sdk_class(type(obj)):
                return
            try:
                watcher.seen(kind, cost, _call_site())
            except Exception:  # noqa: BLE001 - never break the library that built it
                pass

        __init__.__gunicorn_otel_watch__ = True  # type: ignore[attr-defined]
        return __init__

    def seen(self, kind: str, cost: str, site: str) -> None:
        if os.getpid() != self.pid:
            return
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            key = (kind, site)
            first = key not in self.sites
            self.sites[key] = self.sites.get(key, 0) + 1
        if first:
            self._on_first(kind, cost, site)

    def total(self) -> int:
        return sum(self.counts.values())


def _sdk_class(cls: type) -> bool:
    return cls.__module__.startswith("opentelemetry.sdk.")


def _sdk_dirs() -> tuple[str, ...]:
    sdk = sys.modules.get("opentelemetry.sdk")
    paths = list(getattr(sdk, "__path__", []) or [])
    return tuple(paths) + _SKIP_PREFIXES


def _call_site() -> str:
    skip = _sdk_dirs()
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _warn(kind: str, cost: str, site: str) -> None:
    log.warning(
        "gunicorn-otel: %s built a second OpenTelemetry %s in worker %s, after gunicorn-otel's; it costs %s "
        "and its telemetry bypasses this worker's pipelines (warned once per call site). Reuse the worker's: %s",
        site,
        kind,
        os.getpid(),
        cost,
        _REUSE[kind],
    )


_watcher: Watcher | None = None


def watch() -> Watcher:
    """Start watching in this process (idempotent per process)."""
    global _watcher
    if _watcher is None or _watcher.pid != os.getpid():
        _watcher = Watcher()
        _watcher.install()
    return _watcher


def native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def register_metrics(meter_provider, watcher: Watcher) -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    meter = meter_provider.get_meter("gunicorn_otel")

    def created(options: CallbackOptions):
        with watcher._lock:
            counts = dict(watcher.counts)
        return [Observation(n, {"kind": kind}) for kind, n in counts.items()]

    def threads(options: CallbackOptions):
        return [Observation(native_threads())]

    meter.create_observable_counter(
        "gunicorn_otel.foreign_pipelines",
        callbacks=[created],
        unit="{pipeline}",
        description="OpenTelemetry providers, batch processors and metric readers built in this worker after "
        "gunicorn-otel's, by kind",
    )
    meter.create_observable_gauge(
        "gunicorn_otel.worker.threads",
        callbacks=[threads],
        unit="{thread}",
        description="Native threads in this worker process",
    )
