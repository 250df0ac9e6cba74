"""gevent workers under load: throughput, latency and delivery of each recipe, in one run.

    python bench/gevent_bench.py [--duration 8] [--rounds 2] [--connections 100]

Gunicorn with 2 gevent workers serves a WSGI app that makes 4 spans per
request (``bench/apps.py``: one parent and 3 children since 2026-12-03); ``wrk`` (Debian package) loads it from a separate process; an OTLP/HTTP
receiver on loopback counts what arrives.  Rows:

* uninstrumented: no SDK at all (API no-op spans);
* SDK floor: spans made and ended by the SDK, never exported (provider set in
  ``post_fork``, before the app is imported, since 2026-12-03);
* upstream recipe: stock BatchSpanProcessor + OTLP/HTTP built in ``post_fork``;
* stock BSP after patching: the same built in ``post_worker_init``;
* gunicorn-otel: ``-c python:gunicorn_otel.conf``.

Compare ratios within one run; absolute numbers depend on the machine.  Not
part of the test suite (noisy), see docs/gevent.md for recorded results.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver  # noqa: E402

CONFIGS = [
    ("uninstrumented", None, {}),
    ("SDK floor (made, never exported)", "python:bench.configs.sdk_floor_post_fork", {}),
    ("upstream recipe (BSP in post_fork)", "python:bench.configs.upstream_post_fork", {}),
    ("stock BSP in post_worker_init", "python:bench.configs.stock_post_worker_init", {}),
    ("gunicorn-otel", "python:gunicorn_otel.conf", {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}),
]
BAD_LOG = re.compile(r"Traceback|MonkeyPatchWarning|KeyError|Exception ignored|Queue full|Failed to export")


def parse_wrk(output: str) -> tuple[float, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    value, unit = float(p99.group(1)), p99.group(2)
    return rps, value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _cpu_seconds(pid: int) -> float:
    """User+system CPU a process has used (worker CPU per request is a steadier figure than req/s)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    """CPU used by this process: the in-process receiver, competing for the same cores."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(name, config, extra_env, args, receiver, workdir) -> dict:
    receiver.clear()
    counts = pathlib.Path(tempfile.mkdtemp(dir=workdir))
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint + "/v1/traces",
        "OTEL_SERVICE_NAME": "bench",
        "BENCH_COUNT_DIR": str(counts),
        "APP_SPANS_PER_REQUEST": "4",
        **extra_env,
    }
    log_path = pathlib.Path(workdir) / f"{name.split()[0]}-{time.monotonic_ns()}.log"
    with GunicornProcess(
        "bench.apps:app",
        worker_class="gevent",
        workers=2,
        config=config,
        env=env,
        log_path=log_path,
        args=("--no-control-socket", "--worker-connections", "1000", "--graceful-timeout", "30"),
        ready_path="/",
    ) as proc:
        proc.start()
        receiver_cpu_before = _self_cpu()
        wrk = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency", proc.base_url + "/"],
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
        )
        cpu = sum(_cpu_seconds(pid) for pid in proc.live_worker_pids())
        receiver_cpu = _self_cpu() - receiver_cpu_before
        stop = proc.stop(signal.SIGTERM, timeout=60)
        log = proc.log_text()
    served = sum(int(p.read_text() or 0) for p in counts.iterdir())
    made = served * 4 if config else 0
    if config in (None, "python:bench.configs.sdk_floor_post_fork"):
        delivered = None
    else:
        receiver.wait_for(lambda: receiver.span_count() >= made, timeout=15)
        delivered = receiver.span_count()  # every span of the requests (cleared at the start of each row)
    rps, p99 = parse_wrk(wrk.stdout)
    requests_done = int(re.search(r"(\d+) requests in", wrk.stdout).group(1))
    return {
        "cpu_us": cpu / max(requests_done, 1) * 1e6,
        "receiver_cpu_pct": 100.0 * receiver_cpu / args.duration,
        "name": name,
        "rps": rps,
        "p99_ms": p99,
        "made": made,
        "delivered": delivered,
        "stop_s": stop.elapsed,
        "bad_log": sorted(set(BAD_LOG.findall(log))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--only", help="run only configs whose name contains this")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="gevent-bench-")
    results: dict[str, list[dict]] = {}
    with OTLPReceiver() as receiver:
        for _ in range(args.rounds):
            for name, config, extra in CONFIGS:
                if args.only and args.only not in name:
                    continue
                results.setdefault(name, []).append(run_one(name, config, extra, args, receiver, workdir))
    floor = statistics.median(
        r["rps"] for r in results.get("SDK floor (made, never exported)", [{"rps": float("nan")}])
    )
    upstream = statistics.median(
        r["rps"] for r in results.get("upstream recipe (BSP in post_fork)", [{"rps": float("nan")}])
    )
    print(
        f"\n`python bench/gevent_bench.py --duration {args.duration} --rounds {args.rounds} --connections {args.connections}`"
        f" (2 gevent workers, 4 spans/request, wrk -t2 -c{args.connections}; medians of {args.rounds} rounds)\n"
    )
    print(
        "| configuration | req/s | vs upstream | vs SDK floor | p99 ms | worker CPU us/req | receiver CPU % | spans delivered / made | stop s | log problems |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        stop = statistics.median(r["stop_s"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        rcpu = statistics.median(r["receiver_cpu_pct"] for r in runs)
        made = sum(r["made"] for r in runs)
        delivered = [r["delivered"] for r in runs]
        if None in delivered:
            delivery = "n/a"
        else:
            delivery = f"{sum(delivered):,} / {made:,} ({100.0 * sum(delivered) / max(made, 1):.1f}%)"
        problems = ", ".join(sorted({p for r in runs for p in r["bad_log"]})) or "none"
        print(
            f"| {name} | {rps:,.0f} | {rps / upstream:.2f}x | {rps / floor:.2f}x | {p99:.1f} | {cpu:.0f} | {rcpu:.0f} | {delivery} | {stop:.1f} | {problems} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
