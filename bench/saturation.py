"""Every worker class at saturation: throughput, p99 and delivery of each recipe, in one run.

    python bench/saturation.py [--duration 4] [--rounds 2] [--only gthread,asgi] [--rows ours,floor]
                               [--boot-requests 40] [--no-boot]

One section per worker class.  Rows, interleaved round by round so that
machine noise hits them alike:

* uninstrumented: no SDK at all (API no-op spans);
* SDK floor: a ``TracerProvider`` with no processor (spans made, never
  exported), set in ``post_fork`` for every class, gevent included (issue #13's
  floor; the app, imported later, gets the SDK's own tracer).  No export design
  can beat it;
* upstream recipe: stock ``BatchSpanProcessor`` + OTLP/HTTP built in ``post_fork``;
* gunicorn-otel: ``-c python:gunicorn_otel.conf`` (traces only, like the recipe);
* gunicorn-otel against a black hole (a socket that accepts and never answers):
  its p99 should match the healthy row's, and every span is counted as dropped.

Each row gets ``--warmup`` seconds (1) of load that is not measured before its
measured ``--duration``: first connections, first requests and, for the black
hole, the one capped wait at its onset (``_worker/thread_batch.py``) fall
there, so p99 and req/s describe the steady state.  CPU per request and the
span counts cover the warm-up too (they are per request served).

WSGI classes serve ``bench.apps.app`` (4 spans of 3 attributes per request: one
parent and 3 children, or with ``--shape flat`` 4 sibling roots, as before 2026-12-03);
``asgi`` and ``UvicornWorker`` serve a FastAPI hello world with FastAPI's native
telemetry (``bench/saturation_apps.py``).  2 workers (``--workers``; with 1
there is no imbalance between workers to read around); ``wrk -t2 --latency``
from its own process; an OTLP/HTTP receiver (``tests/support/receiver.py``) in
this process.  Requests served are counted by the app in each worker
("busiest worker" is the share the busier of the 2 served, per round: an
event-loop worker that accepts first can take all of wrk's connections, and the
other idles);
"spans made" is requests x spans per request, and for gunicorn-otel the exit
lines' own accounting (``accepted/exported/dropped``) is shown next to what
the receiver got.

The boot table (``--max-requests 1``, 1 worker: every request is served by a
freshly forked worker) gives the wall time of N sequential requests (which
includes each worker's exit; Gunicorn's asgi worker and UvicornWorker keep
serving after the limit until their loop notices, so there it measures
little), the median time from SIGKILLing the worker to the first answer of
its replacement ("respawn": fork, boot, app load; no exit path), and the
private memory (``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``)
of each of 2 workers after one request each, without ``--max-requests``.

Compare ratios within one run: the whole table shares two cores with the
load generator and the receiver.  Not part of the test suite; results and the
command are recorded in docs/pipelines.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import pathlib
import platform
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

from bench.apps import SHAPES, describe  # noqa: E402
from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver, blackhole  # noqa: E402

OURS_ENV = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
BAD_LOG = re.compile(
    r"Traceback|MonkeyPatchWarning|KeyError|Exception ignored|Queue full|Failed to export|"
    r"WORKER TIMEOUT|dropping|export queue is full|queue_full=[1-9]"
)
EXIT_LINE = re.compile(r"traces accepted=(\d+) exported=(\d+) dropped=(\d+)")

# section -> (worker class, extra gunicorn args, wrk connections, app kind)
SECTIONS = {
    "sync": ("sync", (), 2, "wsgi"),
    "gthread": ("gthread", ("--threads", "8"), 32, "wsgi"),
    "tornado": ("tornado", (), 32, "wsgi"),
    "asgi": ("asgi", (), 32, "fastapi"),
    "uvicorn": ("uvicorn_worker.UvicornWorker", (), 32, "fastapi"),
    "gevent": ("gevent", ("--worker-connections", "1000"), 100, "wsgi"),
}
ROWS = ("uninstrumented", "floor", "upstream", "ours", "blackhole")
ROW_NAMES = {
    "uninstrumented": "uninstrumented",
    "floor": "SDK floor (made, never exported)",
    "upstream": "upstream recipe (BSP in post_fork)",
    "ours": "gunicorn-otel",
    "blackhole": "gunicorn-otel, black-hole collector",
    "nofreeze": "gunicorn-otel, GUNICORN_OTEL_GC_FREEZE=false",
}
PATHS = {"wsgi": "/", "fastapi": "/items/7"}


def row_setup(section: str, row: str) -> tuple[str, str | None, dict]:
    """(app, gunicorn config, extra environment) of one row."""
    kind = SECTIONS[section][3]
    app = "bench.saturation_apps:" + ("wsgi" if kind == "wsgi" else "fastapi")
    if row == "uninstrumented":
        return app, None, {}
    if row == "floor":
        return app, "python:bench.configs.sdk_floor_post_fork", {}
    if row == "upstream":
        return app, "python:bench.configs.upstream_post_fork", {}
    if kind == "fastapi":
        app += "_ours"
    env = dict(OURS_ENV)
    if row == "nofreeze":
        env["GUNICORN_OTEL_GC_FREEZE"] = "false"
    return app, "python:gunicorn_otel.conf", env


def parse_wrk(output: str) -> tuple[float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    value, unit = float(p99.group(1)), p99.group(2)
    done = int(re.search(r"(\d+) requests in", output).group(1))
    return rps, value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], done


def settle(receiver: OTLPReceiver, target: int, timeout: float = 15.0) -> int:
    """The receiver's span count once it reaches ``target`` or stops changing for 1.5 s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = receiver.span_count()
        if count >= target:
            return count
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 1.5:
            return count
        time.sleep(0.25)
    return receiver.span_count()


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process so far: per request, steadier than req/s on a shared machine."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(counts: pathlib.Path) -> int:
    return sum(per_worker(counts))


def per_worker(counts: pathlib.Path) -> list[int]:
    """Requests each worker served (``bench/apps.py`` writes one file per worker pid)."""
    return [int(p.read_text().strip() or 0) for p in counts.iterdir()]


def busiest_share(counts: pathlib.Path) -> float:
    """The busiest worker's share of the requests: 0.5 is an even split of 2 workers, 1.0 one worker took all.

    An event-loop worker that accepts first can take every connection wrk opens at
    once; the other then idles and req/s halves, whatever the pipeline.
    """
    workers = per_worker(counts)
    return max(workers) / max(sum(workers), 1) if workers else float("nan")


def run_row(
    section: str, row: str, args, receiver: OTLPReceiver, workdir: pathlib.Path, spans_per_request: dict
) -> dict:
    receiver.clear()
    counts = pathlib.Path(tempfile.mkdtemp(dir=workdir))
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(blackhole()).endpoint if row == "blackhole" else receiver.endpoint
        return _run_row(section, row, args, receiver, workdir, spans_per_request, counts, endpoint)


def _run_row(section, row, args, receiver, workdir, spans_per_request, counts, endpoint) -> dict:
    worker_class, extra_args, connections, kind = SECTIONS[section]
    app, config, extra_env = row_setup(section, row)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces",
        "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": "2",
        "OTEL_SERVICE_NAME": "bench",
        "BENCH_COUNT_DIR": str(counts),
        "APP_SPANS_PER_REQUEST": "4",
        "APP_SPAN_SHAPE": args.shape,
        **extra_env,
    }
    log_path = workdir / f"{section}-{row}-{time.monotonic_ns()}.log"
    path = PATHS[kind]
    with GunicornProcess(
        app,
        worker_class=worker_class,
        workers=args.workers,
        config=config,
        env=env,
        log_path=log_path,
        args=("--no-control-socket", "--graceful-timeout", "30", *extra_args),
        ready_path=path,
    ) as proc:
        proc.start()
        if args.warmup > 0:  # first requests, connections and (black hole) the one capped wait at its onset
            subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{args.warmup}s", proc.base_url + path],
                capture_output=True,
                timeout=args.warmup + 60,
            )
        wrk = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{args.duration}s", "--latency", proc.base_url + path],
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
        )
        cpu = sum(cpu_seconds(pid) for pid in proc.live_worker_pids())
        proc.stop(signal.SIGTERM, timeout=60)
        log = proc.log_text()
    requests = served(counts)
    share = busiest_share(counts)
    rps, p99, _ = parse_wrk(wrk.stdout)
    problems = {"queue_full>0" if p.startswith("queue_full") else p for p in BAD_LOG.findall(log)}
    result = {
        "rps": rps,
        "p99": p99,
        "requests": requests,
        "problems": sorted(problems),
        "cpu_us": cpu / max(requests, 1) * 1e6,
        "busiest": share,
        "log": str(log_path),
    }
    if row in ("uninstrumented", "floor"):
        return result
    exits = [tuple(map(int, m)) for m in EXIT_LINE.findall(log)]
    if exits:
        accepted = sum(e[0] for e in exits)
        result["accounting"] = (accepted, sum(e[1] for e in exits), sum(e[2] for e in exits))
        if requests:
            spans_per_request.setdefault(section, accepted / requests)
    if row == "blackhole":
        return result
    per_request = spans_per_request.get(section, 4.0)
    result["made"] = round(requests * per_request)
    result["delivered"] = settle(receiver, result["made"])
    return result


# -- boot --------------------------------------------------------------------


def private_mib(pid: int) -> float:
    text = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text()
    kib = sum(int(m) for m in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text, re.M))
    return kib / 1024.0


def get(port: int, path: str, timeout: float = 30) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def answered(port: int, path: str) -> bool:
    """One request; a worker exiting under it (asgi, uvicorn with --max-requests) counts as a failure."""
    try:
        return get(port, path) == 200
    except (OSError, http.client.HTTPException):
        return False


def run_boot(section: str, row: str, args, receiver: OTLPReceiver, workdir: pathlib.Path) -> dict:
    worker_class, extra_args, _, kind = SECTIONS[section]
    app, config, extra_env = row_setup(section, row)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "bench",
        "APP_SPANS_PER_REQUEST": "4",
        "APP_SPAN_SHAPE": args.shape,
        **extra_env,
    }
    path = PATHS[kind]
    log_path = workdir / f"boot-{section}-{row}-{time.monotonic_ns()}.log"
    with GunicornProcess(
        app,
        worker_class=worker_class,
        workers=1,
        config=config,
        env=env,
        log_path=log_path,
        args=("--no-control-socket", "--max-requests", "1", *extra_args),
        ready_path=path,
    ) as proc:
        proc.start()  # the readiness probe is the first request: that worker is already gone
        started = time.monotonic()
        failures = sum(not answered(proc.port, path) for _ in range(args.boot_requests))
        wall = time.monotonic() - started
        proc.stop(signal.SIGTERM, timeout=60)
    respawn = []
    log_path = workdir / f"respawn-{section}-{row}-{time.monotonic_ns()}.log"
    with GunicornProcess(
        app,
        worker_class=worker_class,
        workers=1,
        config=config,
        env=env,
        log_path=log_path,
        args=("--no-control-socket", *extra_args),
        ready_path=path,
    ) as proc:
        proc.start()
        for _ in range(args.respawns):
            old = set(proc.live_worker_pids())
            started = time.monotonic()
            for pid in old:
                os.kill(pid, signal.SIGKILL)
            # the first answer from a worker forked after the kill
            while True:
                try:
                    if (
                        get(proc.port, "/pid" if kind == "wsgi" else path, timeout=5) == 200
                        and set(proc.live_worker_pids()) - old
                    ):
                        break
                except OSError:
                    pass
                time.sleep(0.002)
            respawn.append(time.monotonic() - started)
        proc.stop(signal.SIGTERM, timeout=60)
    log_path = workdir / f"mem-{section}-{row}-{time.monotonic_ns()}.log"
    with GunicornProcess(
        app,
        worker_class=worker_class,
        workers=2,
        config=config,
        env=env,
        log_path=log_path,
        args=("--no-control-socket", *extra_args),
        ready_path=path,
    ) as proc:
        proc.start()
        for _ in range(8):
            get(proc.port, path)
        memory = [private_mib(pid) for pid in proc.live_worker_pids()]
        proc.stop(signal.SIGTERM, timeout=60)
    return {
        "wall": wall,
        "failures": failures,
        "private": statistics.mean(memory) if memory else float("nan"),
        "respawn": statistics.median(respawn) if respawn else float("nan"),
    }


# -- report ------------------------------------------------------------------


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def print_section(section: str, results: dict, workers: int, shape: str) -> None:
    worker_class, extra_args, connections, kind = SECTIONS[section]
    print(
        f"\n### {section} (`-k {worker_class} -w {workers} {' '.join(extra_args)}`, wrk -t2 -c{connections}, "
        f"{f'bench.apps.app, 4 spans/request ({describe(shape, 4)})' if kind == 'wsgi' else 'FastAPI native telemetry'})\n"
    )
    print(
        "| configuration | req/s | vs floor | worker CPU us/req | floor CPU / CPU | p99 ms | busiest worker "
        "| spans delivered / made | exit lines: accepted / exported / dropped | log problems |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|")
    rows = results.get(section, {})
    floor = med(rows["floor"], "rps") if "floor" in rows else float("nan")
    floor_cpu = med(rows["floor"], "cpu_us") if "floor" in rows else float("nan")
    for row in ROWS:
        runs = rows.get(row)
        if not runs:
            continue
        rps = med(runs, "rps")
        ratios = "/".join(f"{r['rps'] / floor:.2f}" for r in runs) if "floor" in rows else ""
        ratio = f"{rps / floor:.2f}x ({ratios})" if len(runs) > 1 else f"{rps / floor:.2f}x"
        if "made" in runs[0]:
            made = sum(r["made"] for r in runs)
            got = sum(r["delivered"] for r in runs)
            delivery = f"{got:,} / {made:,} ({100.0 * got / max(made, 1):.1f}%)"
            per_round = ", ".join(
                f"{r['made'] - r['delivered']:+,}" if r["made"] != r["delivered"] else "0" for r in runs
            )
            delivery += f"; lost per round: {per_round}"
        else:
            delivery = "n/a"
        if all("accounting" in r for r in runs):
            a = [sum(r["accounting"][i] for r in runs) for i in range(3)]
            accounting = f"{a[0]:,} / {a[1]:,} / {a[2]:,}"
        else:
            accounting = "n/a"
        problems = ", ".join(sorted({p for r in runs for p in r["problems"]})) or "none"
        if row == "blackhole":
            problems = "(expected: drops) " + problems
        cpu = med(runs, "cpu_us")
        busiest = "/".join(f"{100 * r['busiest']:.0f}%" for r in runs)
        print(
            f"| {ROW_NAMES[row]} | {rps:,.0f} | {ratio} | {cpu:.0f} | {floor_cpu / cpu:.2f}x | {med(runs, 'p99'):.1f} "
            f"| {busiest} | {delivery} | {accounting} | {problems} |"
        )


def print_boot(boot: dict, args) -> None:
    print(
        f"\n### boot (`--max-requests 1`, 1 worker, {args.boot_requests} sequential requests; "
        "private memory: mean of 2 workers after 4 requests each)\n"
    )
    print(
        "| worker class | configuration | wall s | per request ms | extra ms per boot | respawn ms | extra ms "
        "| private MiB per worker | extra MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for section, rows in boot.items():
        base = rows.get("uninstrumented")
        for row, runs in rows.items():
            wall = med(runs, "wall")
            private = med(runs, "private")
            respawn = med(runs, "respawn") * 1000
            extra = extra_mib = extra_respawn = ""
            if base and row != "uninstrumented":
                extra = f"{(wall - med(base, 'wall')) / args.boot_requests * 1000:+.0f}"
                extra_mib = f"{private - med(base, 'private'):+.1f}"
                extra_respawn = f"{respawn - med(base, 'respawn') * 1000:+.0f}"
            fails = sum(r["failures"] for r in runs)
            note = f" ({fails} failed)" if fails else ""
            print(
                f"| {section} | {ROW_NAMES[row]} | {wall:.2f}{note} | {wall / args.boot_requests * 1000:.0f} "
                f"| {extra} | {respawn:.0f} | {extra_respawn} | {private:.1f} | {extra_mib} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per row")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each row")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="workers per load row (1: no accept imbalance; the boot table keeps its own)",
    )
    parser.add_argument("--only", help="comma-separated sections (default: all)")
    parser.add_argument("--rows", help="comma-separated rows (default: all)")
    parser.add_argument("--boot-requests", type=int, default=40)
    parser.add_argument("--respawns", type=int, default=10, help="SIGKILLed workers per boot row")
    parser.add_argument("--boot-sections", default="sync,gthread,asgi,uvicorn")
    parser.add_argument("--no-boot", action="store_true")
    parser.add_argument("--no-load", action="store_true", help="only the boot table")
    parser.add_argument("--shape", choices=SHAPES, default="nested", help="the WSGI app's spans (bench/apps.py)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    sections = args.only.split(",") if args.only else list(SECTIONS)
    rows = args.rows.split(",") if args.rows else list(ROWS)
    if "ours" in rows and "floor" not in rows:
        rows.insert(0, "floor")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="saturation-bench-"))
    results: dict[str, dict[str, list[dict]]] = {}
    boot: dict[str, dict[str, list[dict]]] = {}
    spans_per_request: dict[str, float] = {}
    started = time.monotonic()
    with OTLPReceiver() as receiver:
        for round_number in range(args.rounds):
            if args.no_load:
                break
            for section in sections:
                # ours first, so FastAPI's spans per request come from our exit lines
                for row in sorted(rows, key=lambda r: r != "ours"):
                    result = run_row(section, row, args, receiver, workdir, spans_per_request)
                    results.setdefault(section, {}).setdefault(row, []).append(result)
                    print(
                        f"round {round_number + 1} {section:8} {row:15} {result['rps']:8,.0f} req/s "
                        f"p99 {result['p99']:7.1f} ms  made {result.get('made', '-')} delivered "
                        f"{result.get('delivered', '-')} {result.get('accounting', '')} {result['problems']}",
                        file=sys.stderr,
                        flush=True,
                    )
        if not args.no_boot:
            for _ in range(args.rounds):
                for section in args.boot_sections.split(","):
                    for row in ("uninstrumented", "upstream", "ours", "nofreeze"):
                        result = run_boot(section, row, args, receiver, workdir)
                        boot.setdefault(section, {}).setdefault(row, []).append(result)
                        print(f"boot {section:8} {row:15} {result}", file=sys.stderr, flush=True)
    import gunicorn

    command = " ".join(["python bench/saturation.py", *sys.argv[1:]])
    print(f"\n`{command}` ({time.monotonic() - started:.0f} s)\n")
    print(
        f"Gunicorn {gunicorn.__version__}, Python {platform.python_version()}, {args.workers} worker(s), {args.duration} s per row "
        f"after {args.warmup} s of warm-up, "
        f"{args.rounds} rounds interleaved, medians (per-round ratios in brackets); logs in {workdir}"
    )
    for section in sections:
        if section in results:
            print_section(section, results, args.workers, args.shape)
    if boot:
        print_boot(boot, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
