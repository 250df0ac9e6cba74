"""The thread model: sync, gthread and tornado workers (asyncio workers: ``models/asyncio.py``).

Spans and log records share one mechanism, ``_worker/thread_batch.ThreadBatcher``:
a queue of encoded spans (or detached log records) and one export thread per
signal, with back-pressure on the producing thread only while exports are
healthy (``_worker/export_health``).  Full span batches to a plain ``http://``
collector are posted by the thread that fills them, without waiting for the
answer (``_worker/send_ahead``, ``GUNICORN_OTEL_SEND_AHEAD``).  Metrics keep the SDK's
``PeriodicExportingMetricReader``: one collection per interval, no queue to
overflow.  Why not the SDK's batch processors (still available as
``GUNICORN_OTEL_PROCESSOR=batch``, ``models/sdk_batch.py``): they lose spans at
saturation (issue #13, docs/pipelines.md).

``warm_master`` runs in the Gunicorn master (``on_starting``) for this model
and the asyncio one: it imports what the workers will import and freezes the
GC, so each worker boots from a warm, shared image (``_worker/warm_imports``).
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from gunicorn_otel._worker.batch_processors import (
    BatcherLogRecordProcessor,
    BatcherSpanProcessor,
    detached_log_record,
)
from gunicorn_otel._worker.models import Model
from gunicorn_otel._worker.send_ahead import SendAhead
from gunicorn_otel._worker.stats import LOGS, TRACES, ExportStats
from gunicorn_otel._worker.thread_batch import ThreadBatcher
from gunicorn_otel.settings import BatchOptions, MetricOptions, Settings


class ThreadModel(Model):
    name = "threads"
    processor = "threads"
    # An export in flight this long means the collector is slow: producers stop
    # waiting for it (``export_health``); one wait is capped at ``max_wait``.
    slow_after = 0.25
    max_wait = 0.05

    def _batcher(
        self, exporter, stats: ExportStats, signal: str, options: BatchOptions, prepare, send_ahead=None
    ) -> ThreadBatcher:
        return ThreadBatcher(
            exporter,
            signal=signal,
            stats=stats,
            schedule_delay=options.schedule_delay,
            max_export_batch_size=options.max_export_batch_size,
            max_queue_size=options.max_queue_size,
            prepare=prepare,
            slow_after=self.slow_after,
            max_wait=self.max_wait,
            send_ahead=send_ahead,
        )

    def span_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        prepare = getattr(exporter, "prepare_span", None)
        # Full batches of encoded spans are sent by the thread that fills them (``_worker/send_ahead``).
        ahead = SendAhead.for_exporter(exporter) if prepare is not None and options.send_ahead else None
        return BatcherSpanProcessor(self._batcher(exporter, stats, TRACES, options, prepare, ahead))

    def log_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        return BatcherLogRecordProcessor(self._batcher(exporter, stats, LOGS, options, detached_log_record))

    def metric_reader(self, exporter, options: MetricOptions):
        return PeriodicExportingMetricReader(
            exporter, export_interval_millis=options.interval * 1000, export_timeout_millis=options.timeout * 1000
        )

    def warm_master(self, settings: Settings) -> None:
        from gunicorn_otel._worker import warm_imports

        warm_imports.import_all(settings)
        if settings.gc_freeze:
            warm_imports.freeze()


MODEL = ThreadModel()
