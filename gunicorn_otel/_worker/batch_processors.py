"""SDK span and log-record processors over one of our batchers, for every model.

A batcher (``thread_batch.ThreadBatcher``, ``gevent_batch.GreenletBatcher``)
has ``emit(item)``, ``force_flush(timeout)`` and ``shutdown(deadline)``; these
adapters give it the SDK's processor interface.  Nothing here imports gevent.
"""

from __future__ import annotations

import copy

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs._internal import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor

from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.otlp_wire import reads_span_fields

_FAST = reads_span_fields()

_DEFAULT_SHUTDOWN_SECONDS = 30.0  # only when shut down with no deadline (the SDK's own default)


class _BatcherProcessor:
    """What the span and log-record processors share: a batcher, and its flush and shutdown."""

    def __init__(self, batcher) -> None:
        self.batcher = batcher

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.batcher.force_flush(timeout_millis / 1000.0)

    def shutdown(self, deadline: Deadline | None = None) -> bool:
        """By the hook's ``deadline`` (``Runtime.shutdown``); the SDK's own call passes none."""
        return self.batcher.shutdown(deadline or Deadline.after(_DEFAULT_SHUTDOWN_SECONDS))


class BatcherSpanProcessor(_BatcherProcessor, SpanProcessor):  # type: ignore[misc]  # shutdown takes a Deadline
    """Sampled spans into a batcher.

    Build the batcher with ``prepare=exporter.prepare_span`` where the
    exporter has one (``FastOTLPSpanExporter``): each span is then encoded as
    it ends and the queue holds bytes, not span objects (``otlp_wire.EncodedSpan``).
    """

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span) -> None:
        # SpanContext index 3 is trace_flags; bit 1 is "sampled" (``otlp_wire.reads_span_fields``).
        if (span._context[3] & 1) if _FAST else span.context.trace_flags.sampled:
            self.batcher.emit(span)


def detached_log_record(log_record) -> ReadableLogRecord:
    """What a queue may hold of a log record: a shallow copy with its context emptied.

    As in the SDK's batch processor: the queue must not keep a request's whole
    context alive.  Used as the log batcher's ``prepare``, so a record the
    full queue drops is never copied.
    """
    api_record = copy.copy(log_record.log_record)
    api_record.context = Context()
    return ReadableLogRecord(
        log_record=api_record,
        resource=log_record.resource if log_record.resource is not None else Resource.create({}),
        instrumentation_scope=log_record.instrumentation_scope,
        limits=log_record.limits,
    )


class BatcherLogRecordProcessor(_BatcherProcessor, LogRecordProcessor):  # type: ignore[misc]  # as above
    """Log records into a batcher built with ``prepare=detached_log_record``."""

    def on_emit(self, log_record) -> None:
        self.batcher.emit(log_record)
