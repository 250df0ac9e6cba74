"""Spans made and ended by the SDK but never exported, provider set in ``post_worker_init``.  Benchmarks only.

Gunicorn imports the app before ``post_worker_init``, so a tracer the app
takes at import is a ``ProxyTracer`` here: ``bench/pinned.py``'s
``floor_proxy`` row.  The floor of every benchmark is ``sdk_floor_post_fork``.
"""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def post_worker_init(worker):
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "bench"})))
