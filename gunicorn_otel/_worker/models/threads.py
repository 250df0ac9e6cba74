"""Processors and metric readers for one concurrency model.

One batching mechanism per model, shared by spans and log records:

* ``batch``: the SDK's ``BatchSpanProcessor``/``BatchLogRecordProcessor`` and
  ``PeriodicExportingMetricReader`` (a native thread each).  Right for thread
  workers; the subclasses below only add loss accounting.
* ``gevent``: our greenlet processors (``greenlet_batch``), because the stock
  processor built after patching dropped ~94% of spans under load.
* ``simple``: export inline on the caller; for debugging only.
"""

from __future__ import annotations

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from gunicorn_otel._worker.stats import LOGS, QUEUE_FULL, TRACES, ExportStats


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
        if self._deque is not None and len(self._deque) >= self._limit:
            self._stats.dropped(self._signal, QUEUE_FULL, 1)

    def pending(self) -> int:
        return len(self._deque) if self._deque is not None else 0


class CountedBatchSpanProcessor(_QueueAccounting, BatchSpanProcessor):
    """Queues span objects, not spans encoded as they end (as the gevent processor does).

    Encoding on the request thread was tried (2026-12-01, a throwaway variant
    of ``bench/fastapi_bench.py`` under FastAPI's native telemetry, 4 spans per
    request) and overflowed the queue more often, not less.  It left the
    export thread only its HTTP round trip, each of whose GIL hand-offs waits
    behind the busy event loop; encoding the batch in the export thread holds
    the producers back instead.  Try it again only with a benchmark row that
    shows the drops.
    """

    def __init__(self, exporter, stats: ExportStats, **kwargs) -> None:
        super().__init__(exporter, **kwargs)
        self._init_accounting(TRACES, stats)

    def on_end(self, span) -> None:
        if span.context.trace_flags.sampled:
            self._account()
        super().on_end(span)


class CountedBatchLogRecordProcessor(_QueueAccounting, BatchLogRecordProcessor):
    def __init__(self, exporter, stats: ExportStats, **kwargs) -> None:
        super().__init__(exporter, **kwargs)
        self._init_accounting(LOGS, stats)

    def on_emit(self, log_record) -> None:
        self._account()
        super().on_emit(log_record)


class CountedSimpleSpanProcessor(SimpleSpanProcessor):
    def __init__(self, exporter, stats: ExportStats) -> None:
        super().__init__(exporter)
        self._stats = stats

    def on_end(self, span) -> None:
        if span.context.trace_flags.sampled:
            self._stats.accepted(TRACES)
        super().on_end(span)


class CountedSimpleLogRecordProcessor(SimpleLogRecordProcessor):
    def __init__(self, exporter, stats: ExportStats) -> None:
        super().__init__(exporter)
        self._stats = stats

    def on_emit(self, log_record) -> None:
        self._stats.accepted(LOGS)
        super().on_emit(log_record)


def span_processor(kind: str, exporter, stats: ExportStats, bsp: tuple, shutdown_timeout: float):
    delay, queue, batch = bsp
    if kind == "gevent":
        from gunicorn_otel._worker.gevent_batch import GreenletBatcher, GreenletSpanProcessor

        return GreenletSpanProcessor(
            GreenletBatcher(exporter, signal=TRACES, stats=stats, schedule_delay=delay,
                            max_export_batch_size=batch, max_queue_size=queue,
                            prepare=getattr(exporter, "prepare_span", None)),
            shutdown_timeout=shutdown_timeout,
        )
    if kind == "simple":
        return CountedSimpleSpanProcessor(exporter, stats)
    return CountedBatchSpanProcessor(
        exporter, stats, schedule_delay_millis=delay * 1000, max_queue_size=queue, max_export_batch_size=batch
    )


def log_processor(kind: str, exporter, stats: ExportStats, blrp: tuple, shutdown_timeout: float):
    delay, queue, batch = blrp
    if kind == "gevent":
        from gunicorn_otel._worker.gevent_batch import GreenletBatcher, GreenletLogRecordProcessor, detached_log_record

        return GreenletLogRecordProcessor(
            GreenletBatcher(exporter, signal=LOGS, stats=stats, schedule_delay=delay,
                            max_export_batch_size=batch, max_queue_size=queue, prepare=detached_log_record),
            shutdown_timeout=shutdown_timeout,
        )
    if kind == "simple":
        return CountedSimpleLogRecordProcessor(exporter, stats)
    return CountedBatchLogRecordProcessor(
        exporter, stats, schedule_delay_millis=delay * 1000, max_queue_size=queue, max_export_batch_size=batch
    )


def metric_reader(kind: str, exporter, interval: float, timeout: float):
    if kind == "gevent":
        from gunicorn_otel._worker.gevent_metric_reader import GreenletMetricReader

        return GreenletMetricReader(exporter, export_interval_millis=interval * 1000,
                                    export_timeout_millis=timeout * 1000)
    return PeriodicExportingMetricReader(
        exporter, export_interval_millis=interval * 1000, export_timeout_millis=timeout * 1000
    )
