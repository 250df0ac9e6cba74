"""The upstream recipe (OpenTelemetry's fork-process-model docs): build in post_fork.

Under gevent, post_fork runs before monkey.patch_all(), so the batch thread and
its locks are native.  Benchmarks only.
"""

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def post_fork(server, worker):
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def worker_exit(server, worker):
    trace.get_tracer_provider().shutdown()
