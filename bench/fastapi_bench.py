"""FastAPI hello-world under Gunicorn's asgi worker and UvicornWorker: requests/s with and without telemetry.

    python bench/fastapi_bench.py [--duration 6] [--rounds 2] [--connections 32] [--load auto|wrk|python]

For each worker class, in one run, interleaved round by round:

* uninstrumented: ``FastAPI()``, no Gunicorn config;
* upstream recipe: contrib ``FastAPIInstrumentor.instrument_app`` at construction,
  stock ``BatchSpanProcessor`` + OTLP/HTTP exporter built in ``post_fork``
  (``bench/configs/upstream_post_fork.py``);
* gunicorn-otel: ``FastAPI(lifespan=otel_lifespan)`` with ``-c python:gunicorn_otel.conf``
  (traces only, like the recipe; metrics and logs exporters off);
* on FastAPI >= 0.163 also gunicorn-otel with ``telemetry={"operation_spans": False}``
  (only the server span per request).

2 workers on 127.0.0.1, an OTLP/HTTP receiver in its own process
(``python -m tests.support.receiver``), load from ``wrk`` when it is installed,
else a bounded Python generator (threads with keep-alive connections; it then
limits the numbers itself).  Every server is stopped with SIGTERM and the
receiver's span count is read once it stops changing, so the last column shows
what the stop path delivered.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess, free_port, load  # noqa: E402

WORKERS = ["asgi", "uvicorn_worker.UvicornWorker"]
PATH = "/items/7"
TRACES_ONLY = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def configurations(native: bool) -> list[tuple[str, str, str | None, dict]]:
    """(name, app, gunicorn config, extra environment) per row."""
    rows = [
        ("uninstrumented", "fastapi_app_bench:plain", None, {}),
        (
            "upstream recipe (contrib + stock BSP in post_fork)",
            "fastapi_app_bench:contrib",
            "python:bench.configs.upstream_post_fork",
            {},
        ),
        ("gunicorn-otel (otel_lifespan)", "fastapi_app_bench:ours", "python:gunicorn_otel.conf", TRACES_ONLY),
    ]
    if native:
        rows.append(
            (
                "gunicorn-otel, operation_spans off",
                "fastapi_app_bench:ours_server_span_only",
                "python:gunicorn_otel.conf",
                TRACES_ONLY,
            )
        )
    return rows


class Receiver:
    """``python -m tests.support.receiver`` in its own process; follows its once-a-second span count."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.support.receiver", "--port", str(self.port)],
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self._lock = threading.Lock()
        self._reports: list[int] = []
        self._ready = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()
        if not self._ready.wait(20):
            self.stop()
            raise RuntimeError("receiver did not start")

    def _follow(self) -> None:
        for line in self.popen.stdout:
            if line.startswith("receiving"):
                self._ready.set()
            match = re.search(r"spans=(\d+)", line)
            if match:
                with self._lock:
                    self._reports.append(int(match.group(1)))

    def settled_count(self, timeout: float = 20) -> int:
        """The span count once two consecutive reports (a second apart) agree."""
        deadline = time.monotonic() + timeout
        with self._lock:
            seen = len(self._reports)
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self._reports[seen:]
            if len(fresh) >= 2 and fresh[-1] == fresh[-2]:
                return fresh[-1]
            time.sleep(0.2)
        raise RuntimeError("receiver span count did not settle")

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def drive(url: str, args) -> tuple[int, float]:
    """(completed requests, requests/s) from wrk or the Python generator."""
    if args.load == "wrk":
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", url],
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
        ).stdout
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        return requests, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    base, path = url.rsplit("/items", 1)
    started = time.monotonic()
    ok, errors = load(base, "/items" + path, requests=10**9, concurrency=args.connections, timeout=args.duration)
    if errors:
        print(f"warning: {errors} failed requests", file=sys.stderr)
    return ok, ok / (time.monotonic() - started)


def run_one(worker: str, row, args, receiver: Receiver, logdir: pathlib.Path) -> dict:
    name, app, config, extra = row
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "bench", **extra}
    before = receiver.settled_count()
    log = logdir / f"{worker}-{app.split(':')[1]}-{time.monotonic_ns()}.log"
    with GunicornProcess(
        app,
        worker_class=worker,
        workers=args.workers,
        config=config,
        env=env,
        log_path=log,
        args=("--no-control-socket",),
        ready_path=PATH,
    ) as proc:
        proc.start()
        requests, rps = drive(proc.base_url + PATH, args)
        proc.stop(signal.SIGTERM, timeout=60)
    # +1: the readiness probe.  Requests wrk abandons at the end are served but not counted.
    return {"rps": rps, "requests": requests + 1, "spans": receiver.settled_count() - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds of load per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per row; the table shows medians")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "python"

    import fastapi

    from fastapi_otel import server_spans

    rows = configurations(server_spans.native())
    logdir = pathlib.Path(tempfile.mkdtemp(prefix="fastapi-bench-"))
    results: dict[tuple[str, str], list[dict]] = {}
    receiver = Receiver()
    try:
        for _ in range(args.rounds):
            for worker in WORKERS:
                for row in rows:
                    results.setdefault((worker, row[0]), []).append(run_one(worker, row, args, receiver, logdir))
    finally:
        receiver.stop()

    command = " ".join(["python bench/fastapi_bench.py", *sys.argv[1:]])
    load_tool = (
        f"wrk -t2 -c{args.connections}" if args.load == "wrk" else f"Python generator, {args.connections} connections"
    )
    print(f"`{command}`\n")
    print(
        f"FastAPI {fastapi.__version__}, {args.workers} workers, {args.duration} s per run, {load_tool}, "
        f"medians of {args.rounds} rounds; Python {platform.python_version()}; logs in {logdir}\n"
    )
    print("| worker | configuration | req/s (median) | min–max | vs uninstrumented | spans received / requests |")
    print("|---|---|---|---|---|---|")
    for worker in WORKERS:
        base = statistics.median(r["rps"] for r in results[(worker, rows[0][0])])
        for name, *_ in rows:
            runs = results[(worker, name)]
            rps = statistics.median(r["rps"] for r in runs)
            spans = sum(r["spans"] for r in runs)
            requests = sum(r["requests"] for r in runs)
            delivered = "—" if name == rows[0][0] else f"{spans:,} / {requests:,} = {spans / requests:.2f}"
            spread = f"{min(r['rps'] for r in runs):,.0f}–{max(r['rps'] for r in runs):,.0f}"
            print(f"| {worker} | {name} | {rps:,.0f} | {spread} | {rps / base:.2f}x | {delivered} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
