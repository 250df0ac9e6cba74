"""The worker's ``TracerProvider`` span processor: our two processors' work in one call per span event.

The SDK calls its provider's active processor (a ``SynchronousMultiSpanProcessor``)
three times per span: ``on_start``, ``_on_ending`` and ``on_end``
(``Span.start`` and ``Span.end`` in ``opentelemetry/sdk/trace/__init__.py``).
Each call loops over the added processors and calls each in turn.  With ours,
the batch processor and ``inflight.InflightSpans``, that is six calls per span,
four of which do nothing (``on_start`` and ``_on_ending`` of the batch
processor, ``_on_ending`` of the inflight one, and its ``on_start`` for every
span that is not a local root).  The SDK floor (a provider with no processor)
loops over nothing.

``ActiveSpanProcessor`` is that multi-processor, with the two processors added
first, and does their work directly while they are its only ones: a local
root's start goes to ``InflightSpans.root_started``, an end leaves
``InflightSpans.live`` (the pop ``InflightSpans.on_end`` makes) and, for a
sampled span, goes to the batcher's ``emit``, as ``BatcherSpanProcessor.on_end``
does.  Once
anything else is added (``add_span_processor``, e.g. by a library given our
provider), every event goes through the SDK's loop, ours included.  The fast
path is taken only where ``otlp_wire.reads_span_fields`` has checked the
SDK span layout it reads; ``tests/test_active_span_processor.py`` proves the
same outcome as the SDK's loop.  A provider may be set before its pipeline
exists (gevent: ``runtime.claim_tracing``); until ``attach`` adds ours, it
processes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

from gunicorn_otel._worker.inflight import InflightSpans
from gunicorn_otel._worker.otlp_wire import reads_span_fields


class ActiveSpanProcessor(SynchronousMultiSpanProcessor):
    """The provider's active span processor; see the module docstring."""

    def __init__(self, batch=None, inflight: InflightSpans | None = None) -> None:
        super().__init__()
        self._ours: tuple | None = None
        if batch is not None and inflight is not None:
            self.attach(batch, inflight)

    def attach(self, batch, inflight: InflightSpans) -> None:
        """Add our two processors; until then (a provider set before its pipelines exist), nothing is processed.

        The direct path is taken only when ours are the only processors: one
        added earlier (a library given the provider while the app was imported)
        keeps every event on the SDK's loop, which calls it first.
        """
        # Here, not at import: this module is imported before gevent patches
        # (``runtime.claim_tracing``), and ``batch_processors`` imports the
        # SDK's logs module, whose module-level ``Lock`` would stay native.
        from gunicorn_otel._worker.batch_processors import BatcherSpanProcessor

        self.add_span_processor(batch)
        self.add_span_processor(inflight)
        # ``add_span_processor`` makes a new tuple: while this one is current,
        # ours are the only processors.
        current = self._span_processors
        direct = isinstance(batch, BatcherSpanProcessor) and reads_span_fields() and current == (batch, inflight)
        self._root_started = inflight.root_started
        self._tracked = inflight.live  # the same dict, never rebound (``InflightSpans.on_end`` inline)
        # Used only on the direct path, where ``batch`` is a BatcherSpanProcessor.
        self._emit: Callable[[Any], None] = batch.batcher.emit if direct else batch.on_end
        self._ours = current if direct else None

    def on_start(self, span, parent_context=None) -> None:
        if self._span_processors is not self._ours:
            super().on_start(span, parent_context=parent_context)
            return
        # SpanContext index 2 is is_remote (``otlp_wire.reads_span_fields``): a
        # local root has no parent or a remote one.
        parent = span._parent
        if parent is None or parent[2]:
            self._root_started(span)

    def _on_ending(self, span) -> None:
        if self._span_processors is not self._ours:
            super()._on_ending(span)

    def on_end(self, span) -> None:
        if self._span_processors is not self._ours:
            super().on_end(span)
            return
        tracked = self._tracked
        if tracked:  # SpanContext index 1 is span_id
            tracked.pop(span._context[1], None)
        if span._context[3] & 1:  # trace_flags: sampled
            self._emit(span)
