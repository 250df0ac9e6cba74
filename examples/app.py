"""A small WSGI app for the quick start: one span and one log record per request."""

import logging

from opentelemetry import trace

tracer = trace.get_tracer("examples.app")
log = logging.getLogger("examples.app")


def app(environ, start_response):
    with tracer.start_as_current_span("GET " + environ.get("PATH_INFO", "/"), kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span("render"):
            log.warning("rendering %s", environ.get("PATH_INFO", "/"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from gunicorn-otel\n"]
