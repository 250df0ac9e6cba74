"""Exporter wrappers that count what was exported and what failed.

Every pipeline, whatever its processor, exports through one of these, so the
exit summary and the self-metrics see the same numbers for every worker class.
A failed export means its items are gone: the SDK exporters already retried
within their timeout before returning FAILURE.

Each export runs inside ``ExportLogLimiter.exporting``: the SDK's per-retry
and per-batch failure lines are held back and the limiter writes one line
per signal a minute instead (``_worker/export_log_limiter.py``).

A metric export cut off where it waits (gevent's ``Timeout`` at the
shutdown or flush deadline, ``GreenletExit`` when the reader's ticker is
killed) raises a ``BaseException``; its points are counted as dropped at the
deadline, as is an export still running when the runtime gives up on it
(``abandon_in_flight``), so every worker class accounts for every export.
"""

from __future__ import annotations

import itertools
import logging
import threading

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from gunicorn_otel._worker.export_log_limiter import ExportLogLimiter
from gunicorn_otel._worker.stats import EXPORT_FAILED, METRICS, SHUTDOWN_DEADLINE, ExportStats

log = logging.getLogger(__name__)


def _succeeded(result) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class CountingExporter:
    """Wraps a span or log-record exporter (same duck-typed interface).

    ``shutdown`` is made idempotent because the runtime may call it early to
    interrupt a retry sleep when the exit deadline passes, and the SDK's batch
    processor calls it again when its own join ends.
    """

    def __init__(self, inner, signal: str, stats: ExportStats, export_log: ExportLogLimiter | None = None) -> None:
        self.inner = inner
        self.signal = signal
        self.stats = stats
        self.export_log = export_log or ExportLogLimiter()
        self._shut = False

    @property
    def prepare_span(self):
        """The inner exporter's, read when a pipeline asks (``FastOTLPSpanExporter.prepare_span``), or None.

        A processor may encode each span as it ends if the exporter can; it must
        see through us, and get the encoder ``otlp_wire.use_native`` chose.
        """
        return getattr(self.inner, "prepare_span", None)

    def export(self, batch):
        reason = None
        with self.export_log.exporting(self.signal) as attempt:
            try:
                result = self.inner.export(batch)
            except Exception as exc:  # an exporter bug must not kill the batch worker
                log.debug("gunicorn-otel: %s exporter raised", self.signal, exc_info=True)
                reason = f"the exporter raised {type(exc).__name__}: {exc}"
                result = None
        if _succeeded(result):
            self.stats.exported(self.signal, len(batch))
            self.export_log.succeeded(attempt)
        else:
            self.stats.dropped(self.signal, EXPORT_FAILED, len(batch))
            self.export_log.failed(attempt, len(batch), reason)
        return result if result is not None else _failure(self.inner)

    def record(self, count: int, ok: bool, reason: str | None = None) -> None:
        """Count the outcome of an export of ``count`` items made without ``export`` (``send_ahead``)."""
        with self.export_log.exporting(self.signal) as attempt:
            pass
        if ok:
            self.stats.exported(self.signal, count)
            self.export_log.succeeded(attempt)
        else:
            self.stats.dropped(self.signal, EXPORT_FAILED, count)
            self.export_log.failed(attempt, count, reason)

    def shutdown(self, *args, **kwargs):
        if self._shut:
            return None
        self._shut = True
        return self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _failure(inner):
    """The FAILURE member of whichever result enum the inner exporter uses."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    if isinstance(inner, SpanExporter):
        return SpanExportResult.FAILURE
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    return LogRecordExportResult.FAILURE


def _points(metrics_data) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class CountingMetricExporter(MetricExporter):
    """Counts metric data points; keeps the inner exporter's temporality and aggregation."""

    def __init__(self, inner: MetricExporter, stats: ExportStats, export_log: ExportLogLimiter | None = None) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.stats = stats
        self.export_log = export_log or ExportLogLimiter()
        self._shut = False
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # export id -> points, until its outcome is counted

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        count = _points(metrics_data)
        key = next(self._ids)
        with self._lock:
            self._in_flight[key] = count
        reason = None
        with self.export_log.exporting(METRICS) as attempt:
            try:
                result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            except Exception as exc:
                log.debug("gunicorn-otel: metrics exporter raised", exc_info=True)
                reason = f"the exporter raised {type(exc).__name__}: {exc}"
                result = MetricExportResult.FAILURE
            except BaseException:  # cut off at a deadline (gevent.Timeout, GreenletExit): see the module docstring
                if self._settle(key):
                    self.stats.dropped(METRICS, SHUTDOWN_DEADLINE, count)
                raise
        if not self._settle(key):
            return result  # abandoned at the deadline and counted then
        if result is MetricExportResult.SUCCESS:
            self.stats.exported(METRICS, count)
            self.export_log.succeeded(attempt)
        else:
            self.stats.dropped(METRICS, EXPORT_FAILED, count)
            self.export_log.failed(attempt, count, reason)
        return result

    def _settle(self, key: int) -> bool:
        """Take export ``key`` out of the in-flight table; False if it was abandoned already."""
        with self._lock:
            return self._in_flight.pop(key, None) is not None

    def abandon_in_flight(self) -> int:
        """Count the points of exports still running as dropped at the shutdown deadline."""
        with self._lock:
            points = sum(self._in_flight.values())
            self._in_flight.clear()
        self.stats.dropped(METRICS, SHUTDOWN_DEADLINE, points)
        return points

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        if self._shut:
            return
        self._shut = True
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
