"""What a gevent batch queue should hold: span objects, or spans encoded as they end.

    python bench/queue_gc_bench.py [--requests 2000] [--greenlets 50]

In one process, after ``monkey.patch_all()``: request greenlets each make 4
spans per "request" (3 attributes, as ``bench/apps.py``) and yield, with an
application-sized heap of long-lived objects beside them.  Rows:

* SDK floor: no processor;
* queue of spans: ``GreenletBatcher`` holding the spans, encoded at export
  (how the processor worked before spans were encoded at their end);
* queue of encoded spans: ``GreenletBatcher`` with ``prepare=otlp_wire.encode_span``
  (what gunicorn-otel does).

The exporter encodes the batch and succeeds without a network, so the
difference is the queue and the garbage collector.  Not part of the test
suite; see docs/gevent.md for recorded results.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: E402

from gunicorn_otel._worker import otlp_wire  # noqa: E402
from gunicorn_otel._worker.gevent_batch import GreenletBatcher, GreenletSpanProcessor  # noqa: E402
from gunicorn_otel._worker.stats import TRACES, ExportStats  # noqa: E402


class EncodingExporter:
    """Encodes each batch as the OTLP/HTTP exporter would, then reports success."""

    def export(self, batch):
        otlp_wire.encode_spans(batch)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


class GcClock:
    """Collections and seconds spent in the cyclic GC while it is installed."""

    def __init__(self) -> None:
        self.collections = 0
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase, info) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections += 1
            self.seconds += time.perf_counter() - self._started


def run(prepare, *, with_processor: bool, requests: int, greenlets: int) -> dict:
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    if with_processor:
        batcher = GreenletBatcher(
            EncodingExporter(),
            signal=TRACES,
            stats=ExportStats(),
            schedule_delay=5.0,
            max_export_batch_size=512,
            max_queue_size=2048,
            prepare=prepare,
        )
        provider.add_span_processor(GreenletSpanProcessor(batcher))
    tracer = provider.get_tracer("bench.app")

    def serve(count: int) -> None:
        for _ in range(count):
            for i in range(4):
                with tracer.start_as_current_span("work") as span:
                    span.set_attribute("i", i)
                    span.set_attribute("http.route", "/")
                    span.set_attribute("bench", True)
            gevent.sleep(0)

    clock = GcClock()
    gc.collect()
    gc.callbacks.append(clock)
    cpu = time.process_time()
    gevent.joinall([gevent.spawn(serve, requests) for _ in range(greenlets)])
    cpu = time.process_time() - cpu
    gc.callbacks.remove(clock)
    provider.shutdown()
    total = requests * greenlets
    return {"cpu_us": cpu / total * 1e6, "gc_us": clock.seconds / total * 1e6, "collections": clock.collections}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per greenlet")
    parser.add_argument("--greenlets", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    heap = [{"n": i} for i in range(200_000)]  # a long-lived application heap the GC must walk
    rows = [
        ("SDK floor (no processor)", None, False),
        ("queue of spans (encoded at export)", None, True),
        ("queue of encoded spans (gunicorn-otel)", otlp_wire.encode_span, True),
    ]
    results = {name: [] for name, _, _ in rows}
    for _ in range(args.rounds):
        for name, prepare, with_processor in rows:
            results[name].append(
                run(prepare, with_processor=with_processor, requests=args.requests, greenlets=args.greenlets)
            )
    floor = min(r["cpu_us"] for r in results[rows[0][0]])
    print(
        f"`python bench/queue_gc_bench.py --requests {args.requests} --greenlets {args.greenlets} "
        f"--rounds {args.rounds}` (4 spans/request; best of {args.rounds}; {len(heap):,} long-lived objects)\n"
    )
    print("| queue holds | CPU us/request | vs floor | GC us/request | GC collections |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _ in rows:
        best = min(results[name], key=lambda r: r["cpu_us"])
        print(
            f"| {name} | {best['cpu_us']:.1f} | {best['cpu_us'] / floor:.2f}x | {best['gc_us']:.1f} | "
            f"{best['collections']:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
