"""Where a span's export cost goes in a thread-model worker: CPU per request, step by step.

    python bench/span_path.py [--requests 20000] [--rounds 5] [--spans 4]

One process makes requests the way ``bench/apps.py`` does (N spans with 3
attributes each, no HTTP server) under one configuration at a time, each in a
fresh child process, rounds interleaved.  It reports the CPU time of all the
child's threads per request (``time.process_time``), the least of the rounds,
after ``gc.collect(); gc.freeze()`` as in a worker forked from a frozen
master (``--no-freeze`` to skip it), for:

* floor: a ``TracerProvider`` with no processor (spans made, never exported);
* encode only: our provider, each span encoded as it ends, then thrown away;
* queue, no export: encoded into the ``ThreadBatcher``'s queue and taken by
  its export thread, with an exporter that sends nothing;
* export inline: the real OTLP/HTTP exporter, called by the producing thread
  itself every ``max_export_batch_size`` spans (no second thread);
* gunicorn-otel: the thread model as a worker runs it (export thread, real
  exporter, our transport: ``_worker/http_transport.py``);
* gunicorn-otel, requests transport: the same, sending through the SDK's
  requests transport as releases before 0.2 did.

For the configurations with an export thread it also reports that thread's
own CPU per request (its ``pthread_getcpuclockid`` clock, as the batcher's
back-pressure reads it).

A second table times each step on its own, in this process, on ended spans
made beforehand (least of ``--rounds`` x 3 rounds): encoding one span; the
processor's ``on_end`` with the queue and export thread but an exporter that
sends nothing; and one export of ``max_export_batch_size`` encoded spans
through the SDK's exporter with its requests transport, its ``urllib3``
transport, and ours.

The collector is a minimal HTTP server in another process that reads each
body and answers 200, so its own cost is not in the figures.  The steps are
differences on a shared machine: read them as a breakdown, not to the
microsecond.  Not part of the test suite; figures in docs/pipelines.md.
"""

from __future__ import annotations

import argparse
import gc
import http.server
import multiprocessing
import os
import platform
import socketserver
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "floor": "SDK floor (made, never exported)",
    "encode": "encode only",
    "queue": "queue, no export",
    "inline": "export inline (no thread)",
    "ours": "gunicorn-otel (thread model)",
    "ours_requests": "gunicorn-otel, requests transport",
}


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(port_queue) -> None:
    server = _Server(("127.0.0.1", 0), _Sink)
    port_queue.put(server.server_address[1])
    server.serve_forever()


class _NoExport:
    """An exporter that sends nothing (what the SDK's SUCCESS result looks like to the batcher)."""

    def export(self, batch):
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def measure(config: str, requests: int, spans: int, freeze: bool) -> tuple[float, float]:
    """In the child: CPU µs per request of ``config``, all threads and the export thread's share."""
    from opentelemetry import trace

    runtime = None
    if config == "floor":
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
    else:
        from gunicorn_otel import settings
        from gunicorn_otel._worker import runtime as runtime_module

        os.environ.update(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
        if config == "ours_requests":
            from gunicorn_otel._worker import exporters

            exporters._transport_kwargs = lambda options: {"session": exporters._session()}
        runtime = runtime_module.get_or_create(settings.load(), model="threads")
        runtime.start()
        processor = runtime._span_processor
        batcher = processor.batcher
        prepare, exporter = batcher._prepare, batcher.exporter
        if config == "encode":
            processor.on_end = prepare
        elif config == "queue":
            batcher.exporter = _NoExport()
        elif config == "inline":
            pending: list = []
            size = batcher.batch_size

            def on_end(span) -> None:
                pending.append(prepare(span))
                if len(pending) >= size:
                    exporter.export(pending[:])
                    pending.clear()

            processor.on_end = on_end

    tracer = trace.get_tracer("bench.app")

    def request() -> None:
        for i in range(spans):
            with tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
                span.set_attribute("http.route", "/")
                span.set_attribute("bench", True)

    for _ in range(min(2000, requests)):  # warm caches and connections
        request()
    if runtime is not None:
        runtime.tracer_provider.force_flush()
    if freeze:  # as a worker forked from a frozen master is (GUNICORN_OTEL_GC_FREEZE)
        gc.collect()
        gc.freeze()
    export_thread = runtime._span_processor.batcher._export_cpu if runtime is not None else None
    export_started = export_thread() if export_thread is not None else None
    started = time.process_time()
    for _ in range(requests):
        request()
    if runtime is not None:
        runtime.tracer_provider.force_flush()  # the export thread's work is in the figure
    cpu = (time.process_time() - started) / requests * 1e6
    if export_thread is None or export_started is None:
        return cpu, float("nan")
    return cpu, (export_thread() - export_started) / requests * 1e6


def steps(endpoint: str, rounds: int) -> list[tuple[str, float]]:
    """(step, µs per span), each timed on its own; see the module docstring."""
    import requests
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gunicorn_otel._worker import otlp_wire
    from gunicorn_otel._worker.batch_processors import BatcherSpanProcessor
    from gunicorn_otel._worker.fast_span_exporter import FastOTLPSpanExporter
    from gunicorn_otel._worker.stats import TRACES, ExportStats
    from gunicorn_otel._worker.thread_batch import ThreadBatcher

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.app")
    for i in range(4096):
        with tracer.start_as_current_span("work") as span:
            span.set_attribute("i", i % 4)
            span.set_attribute("http.route", "/")
            span.set_attribute("bench", True)
    spans = list(memory.get_finished_spans())
    batch = [otlp_wire.encode_span(span) for span in spans[:512]]
    processor = BatcherSpanProcessor(
        ThreadBatcher(
            _NoExport(),
            signal=TRACES,
            stats=ExportStats(),
            schedule_delay=5.0,
            max_export_batch_size=512,
            max_queue_size=2048,
            prepare=otlp_wire.encode_span,
        )
    )
    url = endpoint + "/v1/traces"
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

    from gunicorn_otel._worker import http_transport

    ours = http_transport.build(verify=True, cert=None, session=requests.Session())
    exporters = [
        ("export, SDK requests transport", FastOTLPSpanExporter(endpoint=url, session=requests.Session())),
        ("export, SDK urllib3 transport", FastOTLPSpanExporter(endpoint=url, _transport=Urllib3HTTPTransport())),
        ("export, gunicorn-otel transport (http.client)", FastOTLPSpanExporter(endpoint=url, _transport=ours)),
    ]

    def encode() -> None:
        for span in spans:
            otlp_wire.encode_span(span)

    def on_end() -> None:
        for span in spans:
            processor.on_end(span)
        processor.force_flush()

    timed = [("encode one span (otlp_wire.encode_span)", encode, len(spans))]
    timed.append(("on_end: encode, queue, export thread; nothing sent", on_end, len(spans)))
    for name, exporter in exporters:
        timed.append((name, lambda exporter=exporter: [exporter.export(batch) for _ in range(8)], 8 * len(batch)))
    gc.collect()
    gc.freeze()
    best = {name: float("inf") for name, _, _ in timed}
    for _ in range(rounds * 3):
        for name, run, count in timed:
            started = time.process_time()
            run()
            best[name] = min(best[name], (time.process_time() - started) / count * 1e6)
    processor.shutdown()
    return list(best.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spans", type=int, default=4, help="spans per request")
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze() before measuring")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*measure(args.child, args.requests, args.spans, not args.no_freeze))
        return 0

    ports: multiprocessing.Queue = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    sink.start()
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{ports.get(timeout=10)}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    results: dict[str, list[float]] = {config: [] for config in CONFIGS}
    export_thread: dict[str, list[float]] = {config: [] for config in CONFIGS}
    try:
        for round_number in range(1, args.rounds + 1):
            for config in CONFIGS:
                command = [sys.executable, __file__, "--child", config, "--requests", str(args.requests)]
                command += ["--spans", str(args.spans)] + (["--no-freeze"] if args.no_freeze else [])
                out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
                cpu, export_cpu = out.stdout.split()[-2:]
                results[config].append(float(cpu))
                export_thread[config].append(float(export_cpu))
                print(f"round {round_number} {config:13s} {results[config][-1]:7.1f} us/req", file=sys.stderr)
        step_figures = steps(env["OTEL_EXPORTER_OTLP_ENDPOINT"], args.rounds)
    finally:
        sink.terminate()
        sink.join(5)

    flags = " --no-freeze" if args.no_freeze else ""
    print(
        f"`python bench/span_path.py --requests {args.requests} --rounds {args.rounds} --spans {args.spans}{flags}`\n"
    )
    print(
        f"Python {platform.python_version()}, {args.spans} spans per request, "
        f"{'no ' if args.no_freeze else ''}gc.freeze(), {args.rounds} rounds\n"
    )
    # Interference from other processes only ever adds CPU time (cache misses,
    # steal), so the least-disturbed round, the minimum, is the figure; the
    # median and the rounds show how noisy the run was.
    floor = min(results["floor"])
    print(
        "| configuration | CPU us/request (min) | median | rounds | over the floor, us/span | floor / CPU "
        "| export thread us/request (median) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for config, name in CONFIGS.items():
        cpu = min(results[config])
        rounds = "/".join(f"{value:.0f}" for value in results[config])
        exporting = statistics.median(export_thread[config])
        print(
            f"| {name} | {cpu:.1f} | {statistics.median(results[config]):.1f} | {rounds} "
            f"| {(cpu - floor) / args.spans:+.1f} | {floor / cpu:.2f}x | {'' if exporting != exporting else f'{exporting:.1f}'} |"
        )
    print("\n| step, timed on its own | CPU us/span (min) |\n|---|---:|")
    for name, figure in step_figures:
        print(f"| {name} | {figure:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
