"""Machine instructions per request against the SDK floor, counted by callgrind: steady where timings are not.

    python bench/span_instructions.py [--requests 256] [--spans 4]

Needs valgrind (``apt-get install valgrind``).  Timings on a shared 2-core
machine move by 10-20% between rounds (``bench/pinned.py``); an instruction
count does not, so small changes to the span path can be compared here.

Each configuration runs in a fresh ``python`` under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``) twice: with ``--requests`` and with three times as many;
the difference divided by the extra requests is the count per request, without
start-up.  A request is what ``bench/apps.py`` does: ``--spans`` spans with 3
attributes each, no HTTP server.  Configurations:

* floor: a ``TracerProvider`` with no processor (spans made, never exported);
* gunicorn-otel, producer side: the thread model's provider as a worker builds
  it (``Runtime.start``), with an exporter that sends nothing and send-ahead
  off, so what is counted is the request thread's work plus the export
  thread taking batches;
* encode only: the same provider, each ended span encoded and thrown away.

Counts include every thread of the process (callgrind runs them one at a
time).  Instructions are not time (cache misses, the GIL and system calls are
not in them): read the ratios next to ``bench/pinned.py``.  Not part of the
test suite; figures in docs/pipelines.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "floor": "floor: spans made, never exported",
    "producer": "gunicorn-otel, producer side (exporter sends nothing)",
    "encode": "encode only",
}


def _child(config: str, requests: int, spans: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_SERVICE_NAME="bench",
        GUNICORN_OTEL_RUNTIME_METRICS="false",
        GUNICORN_OTEL_SEND_AHEAD="false",
    )
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SpanExportResult

    runtime = None
    if config == "floor":
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
    else:
        from gunicorn_otel import settings
        from gunicorn_otel._worker import runtime as runtime_module

        runtime = runtime_module.get_or_create(settings.load(), model="threads")
        runtime.start()

        class _SendsNothing:
            def export(self, batch):
                return SpanExportResult.SUCCESS

            def shutdown(self):
                pass

        batcher = runtime._span_processor.batcher
        batcher.exporter = _SendsNothing()
        if config == "encode":
            prepare = batcher._prepare
            runtime.tracer_provider._active_span_processor._emit = prepare

    tracer = trace.get_tracer("bench.app")

    def request() -> None:
        for i in range(spans):
            with tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
                span.set_attribute("http.route", "/")
                span.set_attribute("bench", True)

    for _ in range(600):  # warm caches
        request()
    if runtime is not None:
        runtime.tracer_provider.force_flush()
    gc.collect()
    gc.freeze()
    for _ in range(requests):
        request()
    if runtime is not None:
        runtime.tracer_provider.force_flush()
    os._exit(0)


def _instructions(config: str, requests: int, spans: int) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", config, "--requests", str(requests), "--spans", str(spans),
    ]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind gave no count for {config}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--spans", type=int, default=4)
    parser.add_argument("--child", choices=CONFIGS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.spans)
        return
    per_request = {}
    for config in CONFIGS:
        low = _instructions(config, args.requests, args.spans)
        high = _instructions(config, 3 * args.requests, args.spans)
        per_request[config] = (high - low) / (2 * args.requests)
    floor = per_request["floor"]
    print(
        f"Python {sys.version.split()[0]}, {args.spans} spans per request, {args.requests} and {3 * args.requests} requests"
    )
    print()
    print("| configuration | instructions / request | beyond the floor | floor / row |")
    print("|---|---:|---:|---:|")
    for config, label in CONFIGS.items():
        count = per_request[config]
        print(f"| {label} | {count / 1000:.1f}k | {(count - floor) / 1000:+.1f}k | {floor / count:.2f}x |")


if __name__ == "__main__":
    main()
