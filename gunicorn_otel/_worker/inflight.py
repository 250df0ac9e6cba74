"""Request spans still open when the master aborts a worker for a timeout.

Gunicorn's master sends SIGABRT to a worker whose heartbeat is older than
``--timeout``, and SIGKILL at its next loop iteration, about a second later
(``Arbiter.murder_workers`` in ``gunicorn/arbiter.py``).  A span that has not
ended by then is never exported: the request that timed out leaves no trace.

``InflightSpans`` is a span processor that remembers the *local root* spans
that are open (a span with no parent, or a remote one: the server span of each
request).  It looks at no other span, so the cost per span is one attribute
test on start and one dict ``pop`` on end (measured in ``bench/inflight_cost.py``).  On abort, ``end_inflight`` ends the
ones that will not finish by themselves with an ERROR status and
``error.type=worker_timeout``; the span that was running when the signal came
(the stuck one, possibly a child of its request's root) also gets an
``exception`` event with the stuck stack.  The runtime then flushes them with
the error log record.

The same processor writes each request's trace and span id into the WSGI
environ for the access log (``access_log``), since it already sees every
local root at its start.

After the abort the stuck code unwinds (``SystemExit`` from Gunicorn's
handler) through its ``with`` blocks, which call ``end()`` and ``set_status``
again; the SDK would log a warning for each ("Calling end() on an ended
span.").  ``quiet_ended_span_warnings`` drops those, once an abort happened.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from gunicorn_otel._worker import access_log
from gunicorn_otel._worker.otlp_wire import reads_span_fields

_FAST = reads_span_fields()

ERROR_TYPE = "worker_timeout"
# A root span an app never ends would stay here; past this many open at once
# new ones are not tracked (no worker serves that many requests at a time).
MAX_TRACKED = 10_000
DESCRIPTION = "worker timeout: Gunicorn's master aborted the worker (SIGABRT)"


class InflightSpans(SpanProcessor):
    """Tracks open local-root spans; see the module docstring."""

    def __init__(self) -> None:
        # Under gevent this module is imported after monkey.patch_all(), so
        # get_ident names the greenlet, not the native thread.
        self._ident = threading.get_ident
        self._environ = access_log.current_environ.get
        # span id -> (span, thread ident).  Never rebound: ``ActiveSpanProcessor``
        # holds the same dict and pops ended spans from it as ``on_end`` does.
        self.live: dict[int, tuple[Span, int]] = {}

    # Every span passes here twice, so both methods read the SDK span's private
    # fields where ``otlp_wire`` has checked their layout (SpanContext is a
    # tuple: index 1 is span_id, 2 is is_remote), not through five properties.
    def on_start(self, span: Span, parent_context=None) -> None:
        parent = span._parent if _FAST else span.parent
        if parent is None or (parent[2] if _FAST else parent.is_remote):
            self.root_started(span)

    def root_started(self, span: Span) -> None:
        """``span`` is a local root that just started (``ActiveSpanProcessor`` calls this directly)."""
        live = self.live
        if len(live) < MAX_TRACKED:
            span_id = span._context[1] if _FAST else span.get_span_context().span_id  # type: ignore[index]
            live[span_id] = (span, self._ident())
        environ = self._environ()
        if environ is not None:
            access_log.stamp(environ, span.get_span_context())

    def on_end(self, span: ReadableSpan) -> None:
        # The SDK passes a ReadableSpan copy, not the live span: key by span id.
        # (``ActiveSpanProcessor.on_end`` does the same pop inline.)
        if self.live:
            self.live.pop(span._context[1] if _FAST else span.context.span_id, None)  # type: ignore[index]

    def open_spans(self, only_ident: int | None = None) -> list[Span]:
        """Open local roots, oldest first; only those started by ``only_ident`` if given."""
        # tuple() of a dict view runs in C without releasing the GIL: no
        # other thread can resize the dict under it.
        entries = tuple(self.live.values())
        return [span for span, ident in entries if only_ident is None or ident == only_ident]


def end_inflight(processor: InflightSpans, *, stuck, stack: str, only_ident: int | None) -> int:
    """End the open request spans with the timeout error; returns how many were ended.

    ``stuck``: the span current in the interrupted code (may be a child span,
    or a non-recording span).  ``only_ident``: under gevent the worker survives
    the abort (``GeventWorker.handle_request`` swallows the SystemExit and the
    hub resumes the heartbeat), so only the stuck greenlet's spans are ended;
    the other requests finish and are exported as usual.
    """
    spans = processor.open_spans(only_ident)
    if stuck is not None and getattr(stuck, "is_recording", lambda: False)() and stuck not in spans:
        spans.insert(0, stuck)  # a child ends before its parent, as it would have
    for span in spans:
        if not span.is_recording():
            continue
        span.set_attribute("error.type", ERROR_TYPE)
        span.set_status(Status(StatusCode.ERROR, DESCRIPTION))
        if span is stuck:
            span.add_event(
                "exception",
                {
                    "exception.type": "WorkerTimeout",
                    "exception.message": DESCRIPTION,
                    "exception.stacktrace": stack,
                },
            )
        span.end()
    return len(spans)


_ENDED_SPAN_WARNINGS = (
    "Calling end() on an ended span.",
    "Setting attribute on ended span.",
    "Tried calling %s on an ended span.",
)


class _EndedSpanWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _ENDED_SPAN_WARNINGS


_filter = _EndedSpanWarnings()


def quiet_ended_span_warnings() -> None:
    """Drop the SDK's warnings about spans we ended on abort (idempotent)."""
    logger = logging.getLogger("opentelemetry.sdk.trace")
    if _filter not in logger.filters:
        logger.addFilter(_filter)
