"""Per-span cost of the official OTLP span encoder and of ``gunicorn_otel._worker.otlp_wire``.

    python bench/encode_bench.py [--spans 20000] [--batch 512] [--rounds 5]

Makes real SDK spans with 3 attributes (a str, an int, a float), checks both
encoders produce the same bytes, then times encoding them in batches the way
the BatchSpanProcessor hands them to the exporter, and prints a markdown table
(best round of each, in microseconds per span).  ``otlp_wire`` is timed with
each span encoder (the C extension, where built, and the Python one), and
``encode_span`` alone, one span at a time, as a worker calls it when a span ends.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gunicorn_otel._worker import otlp_wire


def make_spans(count: int) -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench", "1.0")
    for i in range(count):
        with tracer.start_as_current_span("GET /items/{id}") as span:
            span.set_attribute("http.route", "/items/{id}")
            span.set_attribute("worker.slot", i % 4)
            span.set_attribute("duration", i * 0.001)
    return list(exporter.get_finished_spans())


def official(batch) -> bytes:
    return official_encode(batch).SerializeToString()


def us_per_span(encode, spans: list, batch: int, rounds: int) -> float:
    batches = [spans[i : i + batch] for i in range(0, len(spans), batch)]
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for chunk in batches:
            encode(chunk)
        best = min(best, time.perf_counter() - start)
    return best / len(spans) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    spans = make_spans(args.spans)
    sample = spans[: args.batch]
    if otlp_wire.encode_spans(sample) != official(sample):
        print("otlp_wire output differs from the official encoder's", file=sys.stderr)
        return 1

    theirs = us_per_span(official, spans, args.batch, args.rounds)
    rows = []
    encoders = [("C", True), ("Python", False)] if otlp_wire.NATIVE is not None else [("Python", False)]
    for name, native in encoders:
        otlp_wire.use_native(native)
        alone = otlp_wire.encode_span
        batched = us_per_span(otlp_wire.encode_spans, spans, args.batch, args.rounds)
        one_by_one = us_per_span(lambda chunk, e=alone: [e(span) for span in chunk], spans, args.batch, args.rounds)
        rows.append((f"`otlp_wire.encode_spans(batch)`, {name} span encoder", batched))
        rows.append((f"`otlp_wire.encode_span(span)` alone, {name}", one_by_one))
    otlp_wire.use_native(True)
    print(f"`{' '.join(['python', *sys.argv])}`: {args.spans} spans, 3 attributes, batches of {args.batch}, "
          f"best of {args.rounds}, Python {platform.python_version()}\n")  # fmt: skip
    print("| encoder | us/span | ratio |")
    print("|---|---:|---:|")
    print(f"| official `encode_spans(batch).SerializeToString()` | {theirs:.2f} | 1.00x |")
    for label, us in rows:
        print(f"| {label} | {us:.2f} | {theirs / us:.1f}x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
