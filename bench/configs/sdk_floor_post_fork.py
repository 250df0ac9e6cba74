"""The cost floor: spans made by the SDK, provider set in ``post_fork``, never exported.

Issue #13's floor, for every worker class, gevent included: the app, imported
after ``post_fork``, gets the SDK's own tracer.  (Under gevent this runs the
default resource detectors in short-lived threads before patching; harmless
for a benchmark that exports nothing, and gunicorn-otel itself runs them after
patching.)  ``sdk_floor``
sets the provider in ``post_worker_init`` instead.  Benchmarks only.
"""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def post_fork(server, worker):
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "bench"})))
