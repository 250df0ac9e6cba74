"""Per-span cost of ``InflightSpans`` (the processor that lets a timeout end open request spans).

    python bench/inflight_cost.py [--requests 20000] [--children 3] [--rounds 5]

Makes real SDK spans (one request = a root span with N children, all ended)
through a provider whose export processor does nothing, with and without
``InflightSpans`` added, and with the access-log environ set (the stamping
path).  Prints a markdown table of the best round of each, in microseconds
per span and per request, and the difference to the baseline; then the
processor's own ``on_start`` + ``on_end`` called directly on a root and on a
child span, which is steadier on a busy machine than the whole-span figures.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from gunicorn_otel._worker import access_log
from gunicorn_otel._worker.inflight import InflightSpans


class _Nothing(SpanProcessor):
    """Stands in for the export processor, so only the added processor's cost differs."""


def _provider(with_inflight: bool) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(_Nothing())
    if with_inflight:
        provider.add_span_processor(InflightSpans())
    return provider


def _run(provider: TracerProvider, requests: int, children: int, environ: bool) -> float:
    tracer = provider.get_tracer("bench")
    started = time.perf_counter()
    for _ in range(requests):
        token = access_log.current_environ.set({}) if environ else None
        with tracer.start_as_current_span("GET /items/{id}"):
            for _ in range(children):
                with tracer.start_as_current_span("child"):
                    pass
        if token is not None:
            access_log.current_environ.reset(token)
    return time.perf_counter() - started


def _direct(kind: str, calls: int) -> float:
    """Seconds per on_start+on_end pair called directly on one real span (root or child)."""
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("root") as root:
        span = root if kind == "root" else tracer.start_span("child")
    readable = span._readable_span()
    processor = InflightSpans()
    on_start, on_end = processor.on_start, processor.on_end
    started = time.perf_counter()
    for _ in range(calls):
        on_start(span)
        on_end(readable)
    return (time.perf_counter() - started) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    cases = {
        "baseline (export processor only)": (False, False),
        "+ InflightSpans": (True, False),
        "+ InflightSpans, access-log ids stamped": (True, True),
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so machine noise hits every case alike
        for name, (inflight, environ) in cases.items():
            took = _run(_provider(inflight), args.requests, args.children, environ)
            best[name] = min(best.get(name, took), took)
    spans = args.requests * (1 + args.children)
    base = best["baseline (export processor only)"]
    print(
        f"Python {sys.version.split()[0]} on {platform.machine()}, {args.requests} requests x "
        f"{1 + args.children} spans, best of {args.rounds}"
    )
    print()
    print("| case | us per span | us per request | added per request |")
    print("|---|---|---|---|")
    for name, took in best.items():
        per_request = took / args.requests * 1e6
        added = (took - base) / args.requests * 1e6
        print(f"| {name} | {took / spans * 1e6:.2f} | {per_request:.2f} | {added:+.2f} |")
    print()
    print("InflightSpans alone, on_start + on_end called directly (best round):")
    print()
    print("| span | us per span |")
    print("|---|---|")
    for kind in ("root", "child"):
        took = min(_direct(kind, args.requests * 5) for _ in range(args.rounds))
        print(f"| {kind} | {took * 1e6:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
