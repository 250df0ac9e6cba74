"""Machine instructions per request against the SDK floor, counted by callgrind: steady where timings are not.

    python bench/span_instructions.py [--requests 256] [--spans 4] [--shape nested|flat] [--cache-sim]

Needs valgrind (``apt-get install valgrind``).  Timings on a shared 2-core
machine move by 10-20% between rounds (``bench/pinned.py``); an instruction
count does not, so small changes to the span path can be compared here.

Each configuration runs in a fresh ``python`` under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``) twice: with ``--requests`` and with three times as many;
the difference divided by the extra requests is the count per request, without
start-up.  A request is what ``bench/apps.py`` does: ``--spans`` spans with 3
attributes each (``make_spans``: one parent and its children, or with ``--shape flat``
sibling roots), no HTTP server.  Configurations:

* floor: a ``TracerProvider`` with no processor (spans made, never exported);
* floor, ProxyTracer: the same, with the tracer taken before the provider
  was set, as an app imported before its worker's provider is set keeps it
  (a gevent worker before 2026-12-03; any ``--preload`` app);
* floor, ProxyTracer, shortcut: the same, with the ``ProxyTracer`` shortcut
  every worker installs (``_worker/proxy_tracers``) and nothing else of ours:
  what a proxy still costs;
* gunicorn-otel, producer side: the thread model's provider as a worker builds
  it (``Runtime.start``), with an exporter that sends nothing and send-ahead
  off, so what is counted is the request thread's work plus the export
  thread taking batches;
* gunicorn-otel, producer side, ProxyTracer: the same, with the tracer taken
  before the provider was set (a ``--preload`` app's), through the shortcut
  the worker installs (``_worker/proxy_tracers``);
* encode only: the same provider, each ended span encoded and thrown away;
* producer side and encode only, Python span encoder: the same two with
  ``GUNICORN_OTEL_NATIVE_ENCODER=false`` (the others use the C encoder where
  it is built, as a worker does);
* batches assembled: the producer side, plus the exporter assembling each
  batch's request body (``otlp_wire.encode_spans``) and sending nothing: all of
  our CPU but the HTTP exchange;
* spans queued, encoded by batch: as "batches assembled", but the queue holds
  the ended spans themselves and ``encode_spans`` encodes them a batch at a
  time (the batcher's ``prepare`` removed).  Not what the worker does: kept
  to show why (it saves cache misses and costs more instructions, GC included).

``--cache-sim`` adds callgrind's cache simulation (``--cache-sim=yes``) and its
first-level instruction and data cache misses per request: work that costs
little in a tight loop can cost more in a worker, where the request's own code
evicts it between spans.  Runs the configurations side by side (each child
is single-threaded under valgrind).

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
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "floor": "floor: spans made, never exported",
    "floor_proxy": "floor, the app's tracer taken before the provider was set (a ProxyTracer)",
    "floor_proxy_shortcut": "floor, the app's tracer a ProxyTracer, gunicorn-otel's shortcut installed",
    "producer": "gunicorn-otel, producer side (exporter sends nothing)",
    "producer_proxy": "gunicorn-otel, producer side, the app's tracer a ProxyTracer (its shortcut installed)",
    "producer_python": "gunicorn-otel, producer side, Python span encoder (GUNICORN_OTEL_NATIVE_ENCODER=false)",
    "encode": "encode only",
    "encode_python": "encode only, Python span encoder",
    "assembled": "gunicorn-otel, batches assembled (nothing sent)",
    "spans_queued": "spans queued, encoded by batch (not used)",
}


def _child(config: str, requests: int, spans: int, shape: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_SERVICE_NAME="bench",
        GUNICORN_OTEL_RUNTIME_METRICS="false",
        GUNICORN_OTEL_SEND_AHEAD="false",
    )
    if config.endswith("_python"):  # the same row with the Python span encoder
        os.environ["GUNICORN_OTEL_NATIVE_ENCODER"] = "false"
        config = config.removesuffix("_python")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SpanExportResult

    runtime = None
    proxied = ("floor_proxy", "floor_proxy_shortcut", "producer_proxy")
    early = trace.get_tracer("bench.app") if config in proxied else None
    if config.startswith("floor"):
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
        if config == "floor_proxy_shortcut":
            from gunicorn_otel._worker import proxy_tracers

            proxy_tracers.install()
    else:
        from gunicorn_otel import settings
        from gunicorn_otel._worker import otlp_wire
        from gunicorn_otel._worker import runtime as runtime_module

        runtime = runtime_module.get_or_create(settings.load(), model="threads")
        runtime.start()

        class _SendsNothing:
            def export(self, batch):
                if config in ("assembled", "spans_queued"):
                    otlp_wire.encode_spans(batch)
                return SpanExportResult.SUCCESS

            def shutdown(self):
                pass

        batcher = runtime._span_processor.batcher
        batcher.exporter = _SendsNothing()
        if config == "encode":
            prepare = batcher._prepare
            runtime.tracer_provider._active_span_processor._emit = prepare
        elif config == "spans_queued":
            batcher._prepare = None

    from bench.apps import make_spans

    tracer = early or trace.get_tracer("bench.app")

    def request() -> None:
        make_spans(tracer, spans, shape)

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


def _start(config: str, requests: int, spans: int, shape: str, cache_sim: bool, out: pathlib.Path) -> subprocess.Popen:
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--cache-sim={'yes' if cache_sim else 'no'}",
        sys.executable, __file__, "--child", config, "--requests", str(requests), "--spans", str(spans), "--shape", shape,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def callgrind_totals(out: pathlib.Path) -> dict[str, int] | None:
    """A callgrind output file's totals by event (Ir, and with cache simulation I1mr, D1mr, D1mw...)."""
    names = totals = None
    if out.exists():
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("summary:") or line.startswith("totals:"):
                totals = [int(n) for n in line.split()[1:]]
    if not names or not totals:
        return None
    return dict(zip(names, totals, strict=False))


def _events(process: subprocess.Popen, out: pathlib.Path) -> dict[str, int]:
    _, stderr = process.communicate()
    totals = callgrind_totals(out)
    if totals is None:
        raise SystemExit(f"callgrind gave no totals:\n{stderr[-2000:]}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--spans", type=int, default=4)
    parser.add_argument("--shape", choices=("nested", "flat"), default="nested", help="bench/apps.py's make_spans")
    parser.add_argument("--cache-sim", action="store_true", help="also count first-level cache misses")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="children run at once")
    parser.add_argument("--child", choices=CONFIGS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.spans, args.shape)
        return
    runs = [(config, n) for config in CONFIGS for n in (args.requests, 3 * args.requests)]
    totals: dict[tuple[str, int], dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pending = list(runs)
        while pending:
            batch, pending = pending[: args.jobs], pending[args.jobs :]
            started = []
            for config, n in batch:
                out = pathlib.Path(tmp) / f"{config}.{n}"
                started.append(((config, n), _start(config, n, args.spans, args.shape, args.cache_sim, out), out))
            for key, process, out in started:
                totals[key] = _events(process, out)
    # Per request, without start-up: the difference between the two runs of each configuration.
    per_request = {
        config: {
            event: (totals[config, 3 * args.requests][event] - totals[config, args.requests][event])
            / (2 * args.requests)
            for event in totals[config, args.requests]
        }
        for config in CONFIGS
    }
    floor = per_request["floor"]
    print(
        f"Python {sys.version.split()[0]}, {args.spans} spans per request ({args.shape}), "
        f"{args.requests} and {3 * args.requests} requests"
    )
    print()
    misses = ("I1mr", "D1mr", "D1mw")
    cache = args.cache_sim and all(event in floor for event in misses)
    header = "| configuration | instructions / request | beyond the floor | floor / row |"
    if cache:
        header += " I1 misses / request (beyond) | D1 misses / request (beyond) |"
    print(header)
    print("|---|---:|---:|---:|" + ("---:|---:|" if cache else ""))
    for config, label in CONFIGS.items():
        count = per_request[config]["Ir"]
        line = f"| {label} | {count / 1000:.1f}k | {(count - floor['Ir']) / 1000:+.1f}k | {floor['Ir'] / count:.2f}x |"
        if cache:
            i1 = per_request[config]["I1mr"]
            d1 = per_request[config]["D1mr"] + per_request[config]["D1mw"]
            floor_d1 = floor["D1mr"] + floor["D1mw"]
            line += f" {i1 / 1000:.2f}k ({(i1 - floor['I1mr']) / 1000:+.2f}k) | {d1 / 1000:.2f}k ({(d1 - floor_d1) / 1000:+.2f}k) |"
        print(line)


if __name__ == "__main__":
    main()
