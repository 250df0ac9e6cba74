"""``GUNICORN_OTEL_PROCESSOR=batch``: the SDK's own batch processors, counted.

Not a worker's own model (thread and asyncio workers use ``models/threads.py``
and ``models/asyncio.py``): kept so the SDK's behaviour stays one setting away,
for comparison (``bench/saturation.py``, ``tests/test_pipelines.py``) and as a
fallback.  The SDK's ``BatchSpanProcessor``/``BatchLogRecordProcessor`` and
``PeriodicExportingMetricReader``, a native thread each; the subclasses below
only add loss accounting, and take the exit ``Deadline`` in ``shutdown``.
Under sustained load their export thread falls behind and the queue evicts
spans (issue #13); ``docs/pipelines.md`` has the figures.
"""

from __future__ import annotations

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.models import Model
from gunicorn_otel._worker.stats import LOGS, QUEUE_FULL, TRACES, ExportStats
from gunicorn_otel.settings import BatchOptions, MetricOptions


class _QueueAccounting:
    """Counts items accepted and items the SDK's bounded deque will evict.

    The SDK's ``BatchProcessor.emit`` appends to a ``deque(maxlen=...)``; when it
    is full the oldest item is silently evicted and only an opt-in metric
    records it.  We look at the same deque (``_batch_processor._queue``, guarded
    by the accounting checks in ``tests/test_fault_drills.py``) just before the append.
    """

    def _init_accounting(self, signal: str, stats: ExportStats) -> None:
        self._signal = signal
        self._stats = stats
        inner = getattr(self, "_batch_processor", None)
        self._deque = getattr(inner, "_queue", None)
        self._limit = getattr(inner, "_max_queue_size", None)

    def _account(self) -> None:
        self._stats.accepted(self._signal)
        if self._deque is not None and self._limit is not None and len(self._deque) >= self._limit:
            self._stats.dropped(self._signal, QUEUE_FULL, 1)

    def pending(self) -> int:
        return len(self._deque) if self._deque is not None else 0

    def shutdown(self, deadline: Deadline | None = None) -> bool:
        """Stop by ``deadline``; True if the export thread finished (nothing left behind).

        The SDK's inner processor takes a timeout its wrapper does not pass.
        When its join times out it returns with the thread still exporting and
        items still queued: we report that, so ``Runtime`` counts them.
        """
        inner = getattr(self, "_batch_processor", None)
        if deadline is None or inner is None:
            super().shutdown()  # type: ignore[misc]
            return True
        inner.shutdown(timeout_millis=deadline.remaining_millis())
        thread = getattr(inner, "_worker_thread", None)
        return thread is None or not thread.is_alive()


class CountedBatchSpanProcessor(_QueueAccounting, BatchSpanProcessor):  # type: ignore[misc]  # shutdown(deadline) -> bool widens the SDK's shutdown() (models.Model)
    """Queues span objects, not spans encoded as they end (as the gevent processor does).

    Encoding on the request thread was tried and overflowed the queue more
    often, not less: docs/design-notes.md, "Encoding spans on the request thread".
    """

    def __init__(self, exporter, stats: ExportStats, **kwargs) -> None:
        super().__init__(exporter, **kwargs)
        self._init_accounting(TRACES, stats)

    def on_end(self, span) -> None:
        if span.context.trace_flags.sampled:
            self._account()
        super().on_end(span)


class CountedBatchLogRecordProcessor(_QueueAccounting, BatchLogRecordProcessor):  # type: ignore[misc]  # shutdown(deadline) -> bool widens the SDK's shutdown() (models.Model)
    def __init__(self, exporter, stats: ExportStats, **kwargs) -> None:
        super().__init__(exporter, **kwargs)
        self._init_accounting(LOGS, stats)

    def on_emit(self, log_record) -> None:
        self._account()
        super().on_emit(log_record)


def _batch_kwargs(options: BatchOptions) -> dict:
    return {
        "schedule_delay_millis": options.schedule_delay * 1000,
        "max_queue_size": options.max_queue_size,
        "max_export_batch_size": options.max_export_batch_size,
    }


class SdkBatchModel(Model):
    name = "sdk_batch"
    processor = "batch"

    def span_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        return CountedBatchSpanProcessor(exporter, stats, **_batch_kwargs(options))

    def log_processor(self, exporter, stats: ExportStats, options: BatchOptions):
        return CountedBatchLogRecordProcessor(exporter, stats, **_batch_kwargs(options))

    def metric_reader(self, exporter, options: MetricOptions):
        return PeriodicExportingMetricReader(
            exporter, export_interval_millis=options.interval * 1000, export_timeout_millis=options.timeout * 1000
        )


MODEL = SdkBatchModel()
