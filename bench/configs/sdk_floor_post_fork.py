"""The cost floor for thread and asyncio workers: spans made by the SDK in ``post_fork``, never exported.

Same as ``sdk_floor`` (which builds in ``post_worker_init``, after gevent patches),
at the moment the upstream recipe builds.  Benchmarks only.
"""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def post_fork(server, worker):
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "bench"})))
