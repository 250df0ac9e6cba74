"""The benchmark's WSGI app: one request span with N-1 children, 3 attributes each, counted per worker.

The shape is issue #13's: "4 spans per request (1 parent, 3 children)".
``APP_SPAN_SHAPE=flat`` makes N sibling root spans instead, the shape every
run before 2026-12-03 used (docs/pipelines.md's "Earlier measurements"); a
flat request has N local roots, each tracked in flight, where a nested one
has one.

Each worker writes how many requests it served to ``$BENCH_COUNT_DIR/<pid>``
at exit, so "spans made" is exact, not inferred from the load generator
(which does not count requests still in flight when it stops).
"""

import atexit
import os

from opentelemetry import trace

tracer = trace.get_tracer("bench.app")
SPANS = int(os.environ.get("APP_SPANS_PER_REQUEST", "4"))
SHAPES = ("nested", "flat")  # APP_SPAN_SHAPE
SHAPE = os.environ.get("APP_SPAN_SHAPE", "nested")
if SHAPE not in SHAPES:
    raise ValueError(f"APP_SPAN_SHAPE={SHAPE!r}: expected nested or flat")
_served = [0]


def _write_count():
    directory = os.environ.get("BENCH_COUNT_DIR")
    if directory:
        with open(os.path.join(directory, str(os.getpid())), "w") as f:
            f.write(str(_served[0]))


atexit.register(_write_count)


def describe(shape: str, count: int) -> str:
    """What the benchmarks' tables call a request of ``count`` spans of this shape."""
    return f"1 parent, {count - 1} children" if shape == "nested" else f"{count} sibling roots"


def make_spans(spans_tracer, count: int = SPANS, shape: str = SHAPE) -> None:
    """One request's spans: a parent and ``count - 1`` children (nested), or ``count`` roots (flat).

    Written out, with no helper call per span: the floor is the app's own cost,
    so nothing is added to it that would flatter the other rows.
    """
    if count < 1:
        return
    if shape == "flat":
        for i in range(count):
            with spans_tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
                span.set_attribute("http.route", "/")
                span.set_attribute("bench", True)
        return
    with spans_tracer.start_as_current_span("request") as parent:
        parent.set_attribute("i", 0)
        parent.set_attribute("http.route", "/")
        parent.set_attribute("bench", True)
        for i in range(1, count):
            with spans_tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
                span.set_attribute("http.route", "/")
                span.set_attribute("bench", True)


def app(environ, start_response):
    make_spans(tracer)
    _served[0] += 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
