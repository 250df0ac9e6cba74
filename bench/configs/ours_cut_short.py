"""gunicorn-otel with its span path cut short at one step: where a worker's cost beyond the floor goes.  Benchmarks only.

``BENCH_CUT`` (read in ``post_worker_init``, after gunicorn-otel built the worker's pipelines):

* ``processor``: the active span processor runs (in-flight tracking), but hands
  no span on: nothing is encoded, queued or exported;
* ``encode``: each ended span is encoded, then thrown away (no queue, no export);
* ``queue``: each span is encoded and queued, and every batch is taken as usual,
  but the exporter sends nothing (no batch assembly, no HTTP).

Private attributes are reached into here on purpose: this cuts our own
pipeline apart for ``bench/pinned.py`` and is never used in production.
"""

import os

from opentelemetry.sdk.trace.export import SpanExportResult

from gunicorn_otel.conf import *  # noqa: F403 - every hook of ours
from gunicorn_otel.conf import post_worker_init as _ours_post_worker_init


class _SendsNothing:
    def export(self, batch):
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis=None):
        return True

    def shutdown(self):
        pass


def post_worker_init(worker):
    _ours_post_worker_init(worker)
    from gunicorn_otel._worker import otlp_wire, runtime

    cut = os.environ["BENCH_CUT"]
    built = runtime.current()
    active = built.tracer_provider._active_span_processor
    batcher = built._span_processor.batcher
    if cut == "processor":
        active._emit = lambda span: None
    elif cut == "encode":
        active._emit = otlp_wire.encode_span
    elif cut == "queue":
        batcher.exporter = _SendsNothing()
        if hasattr(batcher, "send_ahead"):
            batcher.send_ahead = None
    else:
        raise ValueError(f"BENCH_CUT={cut!r}: expected processor, encode or queue")
