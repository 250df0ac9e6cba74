"""Fault drills under sustained load: what was served, delivered, dropped, and how long exit took.

    python bench/fault_drills.py [--seconds 12] [--worker-class gthread]

Each drill runs Gunicorn (2 workers, our config) under a steady load of
``wrk -c20`` for ``--seconds``, injects one fault halfway, stops Gunicorn with
SIGTERM, and reads each worker's exit line.  A drill passes when Gunicorn
stopped within the bound, and every span is accounted for: per worker
accepted = exported + dropped, and the receiver got the exported ones, plus at
most the batches abandoned in flight at the shutdown deadline.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver  # noqa: E402

SUMMARY = re.compile(r"traces accepted=(\d+) exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?")
BOUND = 3.0


def _sample_rss(proc, seconds: float) -> tuple[int, int]:
    """(first, peak) of the live workers' largest RSS in KiB, sampled every 0.5 s for ``seconds``."""
    first = peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sizes = []
        for pid in proc.live_worker_pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    sizes += [int(line.split()[1]) for line in f if line.startswith("VmRSS:")]
            except FileNotFoundError:
                pass
        current = max(sizes, default=0)
        first = first or current
        peak = max(peak, current)
        time.sleep(0.5)
    return first, peak


def _kill_one(proc, receiver):
    os.kill(proc.live_worker_pids()[0], signal.SIGKILL)


def _hup(proc, receiver):
    proc.signal(signal.SIGHUP)


def _stuck_request(proc, receiver):
    threading.Thread(target=lambda: _quiet_get(proc, "/sleep?s=30"), daemon=True).start()


def _quiet_get(proc, path):
    try:
        proc.get(path, timeout=40)
    except OSError:
        pass


# (name, before start, halfway, extra gunicorn args, worker class or None, a worker dies without its exit line)
DRILLS = [
    (
        "collector down at start, back halfway",
        lambda r: r.set_mode("down"),
        lambda p, r: r.set_mode("ok"),
        (),
        None,
        False,
    ),
    ("collector goes down halfway", None, lambda p, r: r.set_mode("down"), (), None, False),
    ("collector answers after 1 s", lambda r: r.set_mode("slow", delay=1.0), None, (), None, False),
    (
        "503 with Retry-After: 1, then healthy",
        lambda r: r.set_mode("unavailable", retry_after=1),
        lambda p, r: r.set_mode("ok"),
        (),
        None,
        False,
    ),
    ("black hole", lambda r: r.set_mode("blackhole"), None, (), None, False),
    ("HUP reload under load", None, _hup, (), None, False),
    ("max_requests recycling", None, None, ("--max-requests", "500", "--max-requests-jitter", "50"), None, False),
    ("SIGKILL of a worker", None, _kill_one, (), None, True),
    # gthread keeps heartbeating while a request blocks, so timeouts are a sync-worker drill.
    ("worker timeout (sync; request blocks past --timeout 3)", None, _stuck_request, ("--timeout", "3"), "sync", False),
]


def run(name, before, midway, extra_args, worker_class, lossy, args, workdir) -> dict:
    with OTLPReceiver() as receiver:
        if before:
            before(receiver)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "drill",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": str(BOUND),
            "GUNICORN_OTEL_MASTER_TELEMETRY": "false",
            "APP_SPANS_PER_REQUEST": "2",
        }
        log_path = pathlib.Path(workdir) / (re.sub(r"\W+", "-", name) + ".log")
        with GunicornProcess(
            "wsgi_app:app",
            worker_class=worker_class or args.worker_class,
            workers=2,
            env=env,
            log_path=log_path,
            args=("--no-control-socket", *extra_args),
        ) as proc:
            proc.start()
            wrk = subprocess.Popen(
                ["wrk", "-t1", "-c20", f"-d{args.seconds}s", proc.base_url + "/"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            rss_first, rss_peak = _sample_rss(proc, args.seconds / 2)
            if midway:
                midway(proc, receiver)
            _, rss_after = _sample_rss(proc, args.seconds / 2 + 1)
            rss_peak = max(rss_peak, rss_after)
            out, _ = wrk.communicate(timeout=args.seconds + 60)
            stop = proc.stop(signal.SIGTERM, timeout=90)
            log = proc.log_text()
        received = len([s for s in receiver.spans() if s.name == "work"])
    lines = SUMMARY.findall(log)
    accepted = sum(int(x[0]) for x in lines)
    exported = sum(int(x[1]) for x in lines)
    dropped = sum(int(x[2]) for x in lines)
    reasons: dict[str, int] = {}
    for x in lines:
        for part in filter(None, x[3].split(", ")):
            key, value = part.split("=")
            reasons[key] = reasons.get(key, 0) + int(value)
    served = int(re.search(r"(\d+) requests in", out).group(1))
    # A batch still in flight at the shutdown deadline is counted as dropped
    # (shutdown_deadline) but may still reach the collector after the worker
    # stopped waiting; a SIGKILLed worker writes no exit line at all.
    in_flight = reasons.get("shutdown_deadline", 0)
    ok = (
        all(int(x[0]) == int(x[1]) + int(x[2]) for x in lines)
        and (received >= exported if lossy else exported <= received <= exported + in_flight)
        and stop.elapsed < BOUND + 3
    )
    return {
        "name": name,
        "served": served,
        "accepted": accepted,
        "exported": exported,
        "received": received,
        "dropped": dropped,
        "reasons": reasons,
        "exit": stop.elapsed,
        "workers": len(lines),
        "ok": ok,
        "rss": (rss_first / 1024, rss_peak / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--worker-class", default="gthread")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="fault-drills-")
    rows = [run(*drill, args, workdir) for drill in DRILLS]
    print(
        f"`python bench/fault_drills.py --seconds {args.seconds} --worker-class {args.worker_class}` "
        f"(2 workers, wrk -c20, spans 2/request, shutdown bound {BOUND:g} s)\n"
    )
    print(
        "| drill | requests served | spans made | exported = received | dropped (reasons) | workers that exited | worker RSS MiB (first, peak) | Gunicorn stop s | accounted |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        reasons = ", ".join(f"{k} {v:,}" for k, v in r["reasons"].items()) or "none"
        same = "=" if r["exported"] == r["received"] else "<"
        print(
            f"| {r['name']} | {r['served']:,} | {r['accepted']:,} | {r['exported']:,} {same} {r['received']:,} | "
            f"{r['dropped']:,} ({reasons}) | {r['workers']} | {r['rss'][0]:.0f}, {r['rss'][1]:.0f} | {r['exit']:.1f} | {'yes' if r['ok'] else 'NO'} |"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
