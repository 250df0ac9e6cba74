"""A plain WSGI app that uses only the OpenTelemetry API, as user code does.

The tracer is obtained at import, as user code does.  It is the SDK's own
when the worker's tracer provider was set before the app was imported (every
worker class without ``--preload``), otherwise a proxy that delegates once
the provider is set; ``/tracer`` says which.
"""

import gc
import logging
import os
import sys
import time
from urllib.parse import parse_qs

from opentelemetry import trace

tracer = trace.get_tracer("tests.app")
log = logging.getLogger("tests.app")
DEFAULT_SPANS = int(os.environ.get("APP_SPANS_PER_REQUEST", "1"))


def native_threads_not_from_gevent() -> int:
    """OS threads in this process other than the main one and gevent's own pool.

    gevent's hub keeps a native thread pool (DNS resolution); those threads are
    gevent's, not ours.  Anything else was started by someone in this process.
    """
    tasks = len(os.listdir("/proc/self/task"))
    pool = 0
    if "gevent" in sys.modules:
        import gevent

        hub = gevent.get_hub()
        if hub._threadpool is not None:
            pool = hub._threadpool.size
    return tasks - 1 - pool


def _reply(start_response, body: bytes, status: str = "200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/health":
        return _reply(start_response, b"ok")
    if path == "/native-threads":
        return _reply(start_response, str(native_threads_not_from_gevent()).encode())
    if path == "/tracer":
        return _reply(start_response, type(tracer).__name__.encode())
    if path == "/proxy-method":  # whose start_as_current_span a ProxyTracer runs here
        return _reply(start_response, trace.ProxyTracer.start_as_current_span.__module__.encode())
    if path == "/nested":
        with tracer.start_as_current_span("outer"):
            with tracer.start_as_current_span("inner"):
                pass
        return _reply(start_response, b"ok")
    if path == "/recording":
        with tracer.start_as_current_span("probe") as span:
            return _reply(start_response, str(span.is_recording()).encode())
    if path == "/pid":
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/gc-frozen":
        return _reply(start_response, str(gc.get_freeze_count()).encode())
    if path == "/log":
        with tracer.start_as_current_span("log-span"):
            log.warning(query.get("msg", ["hello"])[0])
        return _reply(start_response, b"ok")
    if path == "/sleep":
        time.sleep(float(query.get("s", ["1"])[0]))
        with tracer.start_as_current_span("slept"):
            pass
        return _reply(start_response, b"ok")
    if path == "/unencodable":
        # The SDK accepts any name; neither OTLP encoder can write a non-string one.
        with tracer.start_as_current_span(123):
            pass
        return _reply(start_response, b"ok")
    if path == "/":
        for i in range(int(query.get("spans", [DEFAULT_SPANS])[0])):
            with tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
        return _reply(start_response, b"ok")
    return _reply(start_response, b"not found", "404 Not Found")
