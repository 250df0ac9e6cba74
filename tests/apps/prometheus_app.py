"""A WSGI app with one instrument of each kind, recorded through the OpenTelemetry API only.

The instruments come from the global proxy meter provider: they start recording
once the worker's runtime sets its provider, as in a user's app.
"""

import os

from opentelemetry import metrics

meter = metrics.get_meter("tests.prometheus_app", "1.0")
orders = meter.create_counter("shop.orders", unit="{order}", description="Orders placed")
latency = meter.create_histogram("shop.order.duration", unit="s", description="Time to place an order")
inflight = meter.create_up_down_counter("shop.inflight", unit="{request}", description="Requests being served")


def _pid_gauge(options):
    yield metrics.Observation(os.getpid(), {})


meter.create_observable_gauge("shop.worker.pid", callbacks=[_pid_gauge], description="This worker's pid")


def _reply(start_response, body: bytes, status: str = "200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        # 204, so the HTTP server metrics of readiness checks can be told from /order's.
        start_response("204 No Content", [])
        return [b""]
    if path == "/native-threads":
        from wsgi_app import native_threads_not_from_gevent

        return _reply(start_response, str(native_threads_not_from_gevent()).encode())
    if path == "/pid":
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/order":
        inflight.add(1)
        orders.add(1, {"shop.kind": "book"})
        latency.record(0.003, {"shop.kind": "book"})
        inflight.add(-1)
        return _reply(start_response, b"ok")
    return _reply(start_response, b"not found", "404 Not Found")
