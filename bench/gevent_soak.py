"""Soak: gevent workers under load while the collector slows down, dies and comes back.

    python bench/gevent_soak.py [--phase 16] [--connections 50]

Four phases of ``--phase`` seconds each under continuous ``wrk`` load: healthy
collector, collector answering after 1 s, collector down (connections
refused), collector back.  Every 2 s it samples the workers' RSS and the
spans received.  At the end it checks what must hold and prints a table:

* no hang: every phase serves requests, and the workers stop within the bound;
* bounded memory: RSS stops growing once the queue and in-flight batches are
  full, and does not grow further after the collector comes back;
* drops accounted for: per worker, accepted = exported + dropped, and the
  receiver got exactly the sum of the workers' "exported";
* export resumes: spans arrive after the collector comes back.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver  # noqa: E402

SUMMARY = re.compile(
    r"gunicorn-otel: pid (\d+) flushed in ([\d.]+)s.*?traces accepted=\d+ exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?"
)


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=int, default=16, help="seconds per phase (4 phases)")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    phases = [("healthy", "ok", {}), ("slow (1 s)", "slow", {"delay": 1.0}), ("down", "down", {}), ("back", "ok", {})]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="gevent-soak-"))
    bound = 5.0
    failures = []
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "soak",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
            "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": str(bound),
            "APP_SPANS_PER_REQUEST": "4",
        }
        with GunicornProcess(
            "bench.apps:app",
            worker_class="gevent",
            workers=2,
            env=env,
            log_path=workdir / "gunicorn.log",
            args=("--no-control-socket", "--worker-connections", "1000"),
            ready_path="/",
        ) as proc:
            proc.start()
            workers = proc.live_worker_pids()
            total = args.phase * len(phases)
            wrk = subprocess.Popen(
                ["wrk", "-t1", f"-c{args.connections}", f"-d{total}s", proc.base_url + "/"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            rows = []
            started = time.monotonic()
            rss_warm = None
            try:
                for name, mode, kwargs in phases:
                    receiver.set_mode(mode, **kwargs)
                    phase_end = started + args.phase * (len(rows) + 1)
                    spans_before = receiver.span_count()
                    rss_max = 0
                    while time.monotonic() < phase_end:
                        time.sleep(2)
                        rss = sum(rss_kib(p) for p in workers)
                        rss_max = max(rss_max, rss)
                        if rss_warm is None:
                            rss_warm = rss
                    rows.append((name, receiver.span_count() - spans_before, rss_max))
                output, _ = wrk.communicate(timeout=60)
            finally:
                if wrk.poll() is None:
                    wrk.kill()
            stop = proc.stop(signal.SIGTERM, timeout=60)
            log = proc.log_text()
        received = receiver.span_count()  # including what the exit flush delivered
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    summaries = SUMMARY.findall(log)
    exported = sum(int(s[2]) for s in summaries)
    dropped = sum(int(s[3]) for s in summaries)
    print(
        f"`python bench/gevent_soak.py --phase {args.phase} --connections {args.connections}` "
        f"(2 gevent workers, 4 spans/request, wrk -t1 -c{args.connections})\n"
    )
    print("| phase | spans received | workers' max RSS (MiB) |")
    print("|---|---|---|")
    for name, count, rss in rows:
        print(f"| {name} | {count:,} | {rss / 1024:.1f} |")
    print()
    print(
        f"requests served: {requests:,} (non-2xx: {errors.group(1) if errors else 0}); "
        f"spans made: {requests * 4:,} or more (wrk does not count requests in flight at its end)"
    )
    print(f"exported (workers' exit lines): {exported:,}; received: {received:,}; dropped: {dropped:,}")
    for s in summaries:
        print(f"  pid {s[0]}: exported={s[2]} dropped={s[3]} ({s[4] or 'none'}), flushed in {s[1]}s")
    print(
        f"stop: {stop.elapsed:.1f}s (bound {bound:g}s); warm RSS {rss_warm / 1024:.1f} MiB, end {rows[-1][2] / 1024:.1f} MiB"
    )
    if any(count == 0 for name, count, _ in rows if name in ("healthy", "back")):
        failures.append("no spans received while the collector was healthy")
    if exported != received:
        failures.append(f"receiver got {received} but workers exported {exported}")
    if exported + dropped < requests * 4:
        failures.append("spans unaccounted for")
    if stop.elapsed > bound + 3:
        failures.append("stop exceeded the bound")
    # Bounded: the queue and the in-flight batches cap what a worker holds, so
    # memory rises while the collector is slow or down, then stops rising
    # (Python keeps freed memory, so it need not fall back).
    worst = max(r[2] for r in rows[1:3])
    if rows[-1][2] > worst * 1.1:
        failures.append("RSS kept growing after the collector came back")
    if "Traceback" in log:
        failures.append("traceback in the log")
    print("\nresult:", "OK" if not failures else "FAILED: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
