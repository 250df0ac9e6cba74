"""A WSGI app as zero-code users write it: no OpenTelemetry set-up, a `requests` call per request.

Run under ``opentelemetry-instrument``; the server span comes from
GUNICORN_OTEL_WRAP_APP, the client span from the requests instrumentation
opentelemetry-instrument loaded in the master.  ``/leak`` builds a provider and
a batch processor per request, as crewAI's ``Telemetry()`` did (crewAI #2279).
"""

import logging
import os

import requests

log = logging.getLogger("tests.zero_code_app")
TARGET = os.environ.get("APP_CLIENT_URL", "")


def _reply(start_response, body: bytes, status: str = "200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _leak() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    provider.get_tracer("leaky").start_span("private").end()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        return _reply(start_response, b"ok")
    if path == "/threads":
        return _reply(start_response, str(len(os.listdir("/proc/self/task"))).encode())
    if path == "/leak":
        _leak()
        return _reply(start_response, b"ok")
    if path == "/call":
        try:
            status = requests.get(TARGET, timeout=5).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        log.warning("called %s: %s", TARGET, status)
        return _reply(start_response, b"ok")
    return _reply(start_response, b"not found", "404 Not Found")
