"""The benchmark's WSGI app: N spans with 3 attributes per request, counted per worker.

Each worker writes how many requests it served to ``$BENCH_COUNT_DIR/<pid>``
at exit, so "spans made" is exact, not inferred from the load generator
(which does not count requests still in flight when it stops).
"""

import atexit
import os

from opentelemetry import trace

tracer = trace.get_tracer("bench.app")
SPANS = int(os.environ.get("APP_SPANS_PER_REQUEST", "4"))
_served = [0]


def _write_count():
    directory = os.environ.get("BENCH_COUNT_DIR")
    if directory:
        with open(os.path.join(directory, str(os.getpid())), "w") as f:
            f.write(str(_served[0]))


atexit.register(_write_count)


def app(environ, start_response):
    for i in range(SPANS):
        with tracer.start_as_current_span("work") as span:
            span.set_attribute("i", i)
            span.set_attribute("http.route", "/")
            span.set_attribute("bench", True)
    _served[0] += 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
