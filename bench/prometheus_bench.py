"""Prometheus endpoint: scrape time with 8 workers, and what recycling does to it.

    python bench/prometheus_bench.py [--recycles 1000] [--scrapes 200] [--simulated 10000] [--series 50]

1. Real Gunicorn, 8 sync workers, ``OTEL_METRICS_EXPORTER=prometheus``,
   ``GUNICORN_OTEL_WRAP_APP=true`` (HTTP server metrics), the test app's
   counter, histogram, up-down counter and gauge, our self-metrics.  Every
   worker serves requests first so each has its series; then ``--scrapes``
   sequential GETs of /metrics: median, p95 and max time, body size, series.
2. The same master after ``--recycles`` real worker exits (``--max-requests 1``:
   every request recycles a worker): scrape time again, files in the snapshot
   directory, the endpoint process's RSS.
3. One worker's snapshot (``--series`` label sets on a counter and a histogram):
   what the 1 s ticker costs a worker each time.
4. The storage code alone (``tests/test_prometheus_store.py``'s way: a worker's
   flock released by closing it), 8 workers with ``--series`` routes each, every
   file rewritten before each scrape: the time of ``Store.collect`` (a scrape
   without HTTP) before and after ``--simulated`` exited workers, and files.

Timings are on a shared machine: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gunicorn_otel._prometheus import snapshot as snap  # noqa: E402
from gunicorn_otel._prometheus.store import Store  # noqa: E402
from tests.support.gunicorn_process import GunicornProcess, free_port, load  # noqa: E402


def _scrapes(port: int, count: int) -> tuple[list[float], int, int]:
    times, size, series = [], 0, 0
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read()
        times.append((time.perf_counter() - started) * 1000)
        size = len(body)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return times, size, series


def _row(label: str, times: list[float], extra: str) -> str:
    q = statistics.quantiles(times, n=20)
    return f"| {label} | {statistics.median(times):.1f} | {q[18]:.1f} | {max(times):.1f} | {extra} |"


def _endpoint(master_pid: int) -> tuple[int, str]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master_pid and b"gunicorn_otel._prometheus" in args:
            return int(entry), args[args.index(b"--dir") + 1].decode()
    raise RuntimeError("no endpoint process")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def real(recycles: int, scrapes: int) -> list[str]:
    port = free_port()
    env = {
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "GUNICORN_OTEL_WRAP_APP": "true",
        "GUNICORN_OTEL_MASTER_TELEMETRY": "false",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc = GunicornProcess(
            "prometheus_app:app",
            workers=8,
            env=env,
            log_path=pathlib.Path(tmp) / "g.log",
            args=("--no-control-socket", "--max-requests", "1"),
        )
        with proc:
            proc.start(ready_timeout=60)
            # 8 workers, each recycled after one request: wait for 8 fresh ones before scraping.
            load(proc.base_url, "/order", requests=16, concurrency=8)
            deadline = time.monotonic() + 60
            while len(proc.live_worker_pids()) < 8 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)  # one snapshot interval: every live worker has written
            pid, directory = _endpoint(proc.master_pid)
            times, size, series = _scrapes(port, scrapes)
            rows.append(
                _row(
                    "8 workers, real",
                    times,
                    f"{size} B, {series} samples, {len(os.listdir(directory))} files, endpoint RSS {_rss_kib(pid)} KiB",
                )
            )
            started = time.monotonic()
            served = 16
            while served < recycles + 16:
                ok, _ = load(
                    proc.base_url, "/order", requests=min(200, recycles + 16 - served), concurrency=8, timeout=600
                )
                served += ok
            took = time.monotonic() - started
            time.sleep(2.0)
            exited = proc.log_text().count("Worker exiting")
            times, size, series = _scrapes(port, scrapes)
            rows.append(
                _row(
                    f"after {exited} real recycles ({took:.0f} s)",
                    times,
                    f"{size} B, {series} samples, {len(os.listdir(directory))} files, endpoint RSS {_rss_kib(pid)} KiB",
                )
            )
            proc.stop()
    return rows


def _families(requests: int, slot: int, series: int) -> list:
    """Worker-sized snapshot: ``series`` routes, each a counter and a 15-bucket histogram, plus a gauge."""
    scope = {"otel_scope_name": "app", "otel_scope_version": "", "otel_scope_schema_url": ""}
    counter, histogram = [], []
    for r in range(series):
        labels = {**scope, "http_route": f"/r{r}", "http_method": "GET"}
        counter.append(["app_requests_total", labels, float(requests)])
        histogram += [
            ["app_seconds_bucket", {**labels, "le": le}, float(requests)]
            for le in (
                "0.0",
                "0.005",
                "0.01",
                "0.025",
                "0.05",
                "0.075",
                "0.1",
                "0.25",
                "0.5",
                "0.75",
                "1.0",
                "2.5",
                "5.0",
                "7.5",
                "+Inf",
            )
        ]
        histogram += [["app_seconds_count", labels, float(requests)], ["app_seconds_sum", labels, requests * 0.01]]
    return [
        ["app_requests", "counter", "", "", counter],
        ["app_seconds", "histogram", "", "seconds", histogram],
        ["app_inflight", "gauge", "", "", [["app_inflight", scope, 0.0]]],
    ]


def simulated(exits: int, scrapes: int, series: int) -> list[str]:
    rows = []
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as directory:
        store = Store(directory)
        live = [snap.WorkerFiles(directory, str(uuid.uuid4()), os.getpid(), s) for s in range(1, 9)]
        for i, files in enumerate(live):
            files.write(_families(i, i + 1, series))

        def timed() -> list[float]:
            # Every worker rewrites its file between two scrapes (1 s vs 15 s or more), so
            # each scrape parses all 8: touch them all first, as the workers' tickers would.
            out = []
            for _ in range(scrapes):
                for i, files in enumerate(live):
                    files.write(_families(7, i + 1, series))
                started = time.perf_counter()
                store.collect()
                out.append((time.perf_counter() - started) * 1000)
            return out

        rows.append(
            _row(f"8 workers x {series} routes, storage only, 0 exited", timed(), f"{store.file_count()} files")
        )
        for n in range(exits):
            i = n % 8
            live[i].write(_families(n, i + 1, series))
            live[i].close()
            live[i] = snap.WorkerFiles(directory, str(uuid.uuid4()), os.getpid(), i + 1)
            live[i].write(_families(1, i + 1, series))
            if n % 500 == 499:
                store.compact()
        store.compact()
        rows.append(
            _row(
                f"8 workers x {series} routes, storage only, {store.absorbed_total} exited",
                timed(),
                f"{store.file_count()} files, baseline "
                f"{os.path.getsize(os.path.join(directory, snap.BASELINE_FILE))} B",
            )
        )
    return rows


def worker_cost(series: int, rounds: int) -> list[str]:
    """What one snapshot costs a worker: collect (SDK + exporter translation), encode, write."""
    from opentelemetry.sdk.metrics import MeterProvider

    from gunicorn_otel._worker import prometheus_reader

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as directory:
        reader = prometheus_reader.build(
            directory, instance_id=str(uuid.uuid4()), slot=1, interval=3600, greenlets=False
        )
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        meter = provider.get_meter("bench")
        counter = meter.create_counter("bench.requests", unit="{request}")
        histogram = meter.create_histogram("bench.duration", unit="s")
        for i in range(series):
            counter.add(1, {"route": f"/r{i}"})
            histogram.record(0.01, {"route": f"/r{i}"})
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            reader.snapshot()
            times.append((time.perf_counter() - started) * 1000)
        size = os.path.getsize(os.path.join(directory, reader._files.snap_name))
        provider.shutdown()
    return [_row(f"one worker snapshot, {series} counter + {series} histogram series", times, f"{size} B file")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recycles", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--simulated", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=50, help="label sets per instrument in the snapshot cost row")
    args = parser.parse_args()
    print("| case | median ms | p95 ms | max ms | state |")
    print("|---|---|---|---|---|")
    for row in worker_cost(args.series, args.scrapes):
        print(row, flush=True)
    for row in simulated(args.simulated, args.scrapes, args.series):
        print(row, flush=True)
    for row in real(args.recycles, args.scrapes):
        print(row, flush=True)


if __name__ == "__main__":
    main()
