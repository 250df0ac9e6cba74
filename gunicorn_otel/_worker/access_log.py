"""Trace and span ids in Gunicorn's access log.

Gunicorn formats the access line after the response is sent
(``Logger.access`` from ``SyncWorker.handle_request``, ``gunicorn/workers/
sync.py``; the same in gthread and gevent), when the request's server span has
usually ended and is no longer current.  So the ids are written when the span
*starts*: ``wrap_wsgi`` puts the request's environ in a context variable for
the duration of the app call, and ``InflightSpans.on_start`` (which already
looks at every local-root span) writes ``otel.trace_id`` and ``otel.span_id``
into it.  Gunicorn's ``%({key}e)s`` atoms read the environ, so ``FORMAT``
below (Gunicorn's default format plus ``trace_id=%({otel.trace_id}e)s
span_id=%({otel.span_id}e)s``) works as ``--access-logformat``.

This works whoever makes the server span (``GUNICORN_OTEL_WRAP_APP``,
Flask's or Django's instrumentation, the app itself): the first local-root
span started during the call is the request's.  An unsampled request has no
recording span and logs ``-``.  The wrapper is installed only when the access
log format names one of the keys, so it costs nothing otherwise.

Gunicorn's asgi worker builds a small environ for its access line after the
app returns (``ASGIProtocol._build_environ``, ``gunicorn/asgi/protocol.py``),
in the same task that ran the app.  ``wrap_asgi`` sets a fresh dict per HTTP
request in the task's context and leaves it set (so it is still visible
then), and the worker's ``log.access`` is wrapped to copy the ids into that
environ: the same format works.

uvicorn's worker logs ``uvicorn.access`` records with a fixed message and
ignores ``--access-logformat``.  ``UvicornAccessIds`` adds ``otelTraceID`` and
``otelSpanID`` attributes to those records (the names
opentelemetry-instrumentation-logging uses) from the span current when uvicorn
logs, which is while the app sends its response; a ``--log-config-json``
formatter can print them.  The tornado worker is left alone.
"""

from __future__ import annotations

import contextvars
import logging

TRACE_ID = "otel.trace_id"
SPAN_ID = "otel.span_id"
KEYS = (TRACE_ID, SPAN_ID)
FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
    "trace_id=%({otel.trace_id}e)s span_id=%({otel.span_id}e)s"
)

log = logging.getLogger(__name__)

# The environ (WSGI) or id dict (ASGI) of the request running in this context.
current_environ: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "gunicorn_otel_access_environ", default=None
)


def stamp(environ: dict, span_context) -> None:
    """Write the ids of the request's first local-root span (called by ``InflightSpans``)."""
    if TRACE_ID not in environ:
        environ[TRACE_ID] = format(span_context.trace_id, "032x")
        environ[SPAN_ID] = format(span_context.span_id, "016x")


def wanted(access_log_format: str) -> bool:
    """True when the configured access log format reads one of our environ keys."""
    fmt = (access_log_format or "").lower()
    return any(f"{{{key}}}e" in fmt for key in KEYS)


class WSGIAccessIds:
    """Makes the request's environ reachable from the span processor during the call."""

    def __init__(self, app) -> None:
        self.app = app  # the name app_wrapping.skip_reason walks

    def __call__(self, environ, start_response):
        token = current_environ.set(environ)
        try:
            return self.app(environ, start_response)
        finally:
            current_environ.reset(token)


class ASGIAccessIds:
    """Gives each HTTP request a fresh id dict in its task's context, left set on purpose."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            current_environ.set({})
        return await self.app(scope, receive, send)


def _access_with_ids(original):
    def access(resp, req, environ, request_time):
        ids = current_environ.get()
        if ids and isinstance(environ, dict):
            environ.update(ids)
        return original(resp, req, environ, request_time)

    return access


class UvicornAccessIds(logging.Filter):
    """Adds ``otelTraceID``/``otelSpanID`` to uvicorn's access records ("0" without a span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        record.otelTraceID = format(context.trace_id, "032x")
        record.otelSpanID = format(context.span_id, "016x")
        return True


def install(worker) -> str | None:
    """Wire ids into ``worker``'s access log if its format asks for them; what was done, or None."""
    if any(cls.__name__ == "UvicornWorker" for cls in type(worker).__mro__):
        logger = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, UvicornAccessIds) for f in logger.filters):
            logger.addFilter(UvicornAccessIds())
        return "uvicorn.access records carry otelTraceID and otelSpanID"
    if not wanted(getattr(worker.cfg, "access_log_format", "")):
        return None
    if any(cls.__name__ == "TornadoWorker" for cls in type(worker).__mro__):
        # TornadoWorker.run tells a tornado Application from a WSGI app by
        # type (gunicorn/workers/gtornado.py); a wrapper would hide which it is.
        log.info("gunicorn-otel: access-log trace ids are not supported on the tornado worker")
        return None
    if hasattr(worker, "asgi"):
        worker.asgi = ASGIAccessIds(worker.asgi)
        worker.log.access = _access_with_ids(worker.log.access)
        return "asgi access log"
    if getattr(worker, "wsgi", None) is None:
        return None
    worker.wsgi = WSGIAccessIds(worker.wsgi)
    return "wsgi access log"
