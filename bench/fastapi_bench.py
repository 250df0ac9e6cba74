"""FastAPI hello-world under Gunicorn's asgi worker and UvicornWorker: req/s with and without telemetry.

    python bench/fastapi_bench.py [--duration 6] [--rounds 2] [--connections 50]

Rows per worker class: uninstrumented; the upstream recipe (contrib
``FastAPIInstrumentor`` + stock ``BatchSpanProcessor`` built in ``post_fork``);
gunicorn-otel (``otel_lifespan`` + ``-c python:gunicorn_otel.conf``).  2 workers,
``wrk`` on loopback, an OTLP/HTTP receiver in this process counting spans.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver  # noqa: E402

CONFIGS = [
    ("uninstrumented", "bench.fastapi_apps:plain", None, {}),
    ("contrib + stock BSP (upstream recipe)", "bench.fastapi_apps:contrib", "python:bench.configs.upstream_post_fork", {}),
    ("gunicorn-otel", "bench.fastapi_apps:ours", "python:gunicorn_otel.conf",
     {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}),
]
WORKERS = ["asgi", "uvicorn_worker.UvicornWorker"]


def run(worker, name, app, config, extra, args, receiver, workdir):
    receiver.clear()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "bench", **extra}
    with GunicornProcess(app, worker_class=worker, workers=2, config=config, env=env,
                         log_path=pathlib.Path(workdir) / f"{worker}-{len(name)}.log",
                         args=("--no-control-socket",), ready_path="/items/1") as proc:
        proc.start()
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", proc.base_url + "/items/7"],
                             capture_output=True, text=True, timeout=args.duration + 60).stdout
        proc.stop(signal.SIGTERM, timeout=60)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    spans = len([s for s in receiver.spans() if s.kind == 2]) if config else None
    return rps, requests, spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="fastapi-bench-")
    rows = []
    with OTLPReceiver() as receiver:
        for worker in WORKERS:
            results = {name: [] for name, *_ in CONFIGS}
            for _ in range(args.rounds):
                for name, app, config, extra in CONFIGS:
                    results[name].append(run(worker, name, app, config, extra, args, receiver, workdir))
            base = statistics.median(r[0] for r in results["uninstrumented"])
            for name, runs in results.items():
                rps = statistics.median(r[0] for r in runs)
                spans = [r[2] for r in runs]
                made = sum(r[1] for r in runs)
                delivered = "n/a" if None in spans else f"{sum(spans):,} / {made:,}+"
                rows.append(f"| {worker} | {name} | {rps:,.0f} | {rps / base:.2f}x | {delivered} |")
    print(f"`python bench/fastapi_bench.py --duration {args.duration} --rounds {args.rounds} "
          f"--connections {args.connections}` (2 workers, wrk -t2 -c{args.connections}; medians)\n")
    print("| worker | configuration | req/s | vs uninstrumented | server spans delivered / requests |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
