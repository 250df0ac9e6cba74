"""Spans made and ended by the SDK but never exported: the cost floor.  Benchmarks only."""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def post_worker_init(worker):
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "bench"})))
