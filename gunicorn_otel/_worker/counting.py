"""Exporter wrappers that count what was exported and what failed.

Every pipeline, whatever its processor, exports through one of these, so the
exit summary and the self-metrics see the same numbers for every worker class.
A failed export means its items are gone: the SDK exporters already retried
within their timeout before returning FAILURE.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from gunicorn_otel._worker.stats import EXPORT_FAILED, METRICS, ExportStats

log = logging.getLogger(__name__)


def _succeeded(result) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class CountingExporter:
    """Wraps a span or log-record exporter (same duck-typed interface).

    ``shutdown`` is made idempotent because the runtime may call it early to
    interrupt a retry sleep when the exit deadline passes, and the SDK's batch
    processor calls it again when its own join ends.
    """

    def __init__(self, inner, signal: str, stats: ExportStats) -> None:
        self.inner = inner
        self.signal = signal
        self.stats = stats
        self._shut = False
        # A processor may encode each span as it ends if the exporter can
        # (``FastOTLPSpanExporter.prepare_span``); it must see through us.
        self.prepare_span = getattr(inner, "prepare_span", None)

    def export(self, batch):
        try:
            result = self.inner.export(batch)
        except Exception:  # an exporter bug must not kill the batch worker
            log.exception("gunicorn-otel: %s exporter raised", self.signal)
            result = None
        if _succeeded(result):
            self.stats.exported(self.signal, len(batch))
        else:
            self.stats.dropped(self.signal, EXPORT_FAILED, len(batch))
        return result if result is not None else _failure(self.inner)

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

    def __init__(self, inner: MetricExporter, stats: ExportStats) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.stats = stats
        self._shut = False

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        count = _points(metrics_data)
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            log.exception("gunicorn-otel: metrics exporter raised")
            result = MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self.stats.exported(METRICS, count)
        else:
            self.stats.dropped(METRICS, EXPORT_FAILED, count)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        if self._shut:
            return
        self._shut = True
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
