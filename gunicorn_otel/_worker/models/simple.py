"""``GUNICORN_OTEL_PROCESSOR=simple``: export inline on the caller, for debugging only.

Not a worker's own model (``worker_kinds.SIMPLE``): any worker class can be
told to use it.  Spans and log records are exported by the thread that ends or
emits them; metrics keep the SDK's periodic reader.
"""

from __future__ import annotations

from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.models import Model
from gunicorn_otel._worker.stats import LOGS, TRACES, ExportStats
from gunicorn_otel.settings import BatchOptions, MetricOptions


class _ShutdownOnce:
    """Nothing is queued, so the deadline has nothing to bound; shut the exporter down once."""

    _stopped = False

    def shutdown(self, deadline: Deadline | None = None) -> bool:
        if not self._stopped:
            self._stopped = True
            super().shutdown()  # type: ignore[misc]
        return True


class CountedSimpleSpanProcessor(_ShutdownOnce, SimpleSpanProcessor):  # type: ignore[misc]  # shutdown(deadline) -> bool widens the SDK's shutdown() (models.Model)
    def __init__(self, exporter, stats: ExportStats) -> None:
        super().__init__(exporter)
        self._stats = stats

    def on_end(self, span) -> None:
        if span.context.trace_flags.sampled:
            self._stats.accepted(TRACES)
        super().on_end(span)


class CountedSimpleLogRecordProcessor(_ShutdownOnce, SimpleLogRecordProcessor):  # type: ignore[misc]  # shutdown(deadline) -> bool widens the SDK's shutdown() (models.Model)
    def __init__(self, exporter, stats: ExportStats) -> None:
        super().__init__(exporter)
        self._stats = stats

    def on_emit(self, log_record) -> None:
        self._stats.accepted(LOGS)
        super().on_emit(log_record)


class SimpleModel(Model):
    name = "simple"
    processor = "simple"

    def span_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        return CountedSimpleSpanProcessor(exporter, stats)

    def log_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        return CountedSimpleLogRecordProcessor(exporter, stats)

    def metric_reader(self, exporter, options: MetricOptions):
        return PeriodicExportingMetricReader(
            exporter, export_interval_millis=options.interval * 1000, export_timeout_millis=options.timeout * 1000
        )


MODEL = SimpleModel()
