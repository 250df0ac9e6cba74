"""Machine instructions per request in a real Gunicorn worker, counted by callgrind: the floor against ours.

    python bench/worker_instructions.py [--only sync,gevent] [--rows floor,ours] [--requests 128] [--cache-sim]

Needs valgrind (``apt-get install valgrind``).  ``bench/pinned.py`` measures
CPU time per request, whose rounds move by +-0.15 on a shared machine;
``bench/span_instructions.py`` counts instructions steadily but without
Gunicorn, HTTP or the export.  This counts everything a worker does per
request (Gunicorn's parsing and response, the app, the spans, encoding,
batching and the OTLP/HTTP export to a sink in another process, every
thread), steadily:

* for each worker class and row (as in ``bench/pinned.py``: the same apps,
  configurations and environment), Gunicorn runs with one worker under
  ``valgrind --tool=callgrind`` (the forked worker stays under it and writes
  its own counts when it exits);
* it gets ``--requests`` sequential requests, then is stopped (SIGTERM, so
  our exit flush runs); then again with three times as many; the worker's
  instruction count difference divided by the extra requests is the count
  per request, without boot and exit;
* the sink is ``bench/pinned.py``'s asyncio one;
* ``--cache-sim`` also simulates the caches (``--cache-sim=yes``; valgrind
  takes the host's cache geometry) and prints callgrind's cycle estimate
  per request: instructions, plus 10 per first-level miss and 100 per
  last-level miss (KCachegrind's "CEst").  A model, not the machine: no
  prefetching, branch prediction or out-of-order execution.

Requests are sent one at a time, so batching and the export follow the
request count, not the concurrency; ``OTEL_BSP_SCHEDULE_DELAY`` is 10 minutes,
so that only full batches are exported before exit (as at saturation) and
both runs export the same batches per request.  Instructions are not time: cache
misses, system calls and waits for the GIL are not in them, so the ratio
here is what ours adds in work, and ``bench/pinned.py`` what it costs.  Not
part of the test suite; figures in docs/pipelines.md.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pinned import PATHS, ROWS, SECTIONS, _serve, row_app_config  # noqa: E402
from bench.span_instructions import callgrind_totals  # noqa: E402
from tests.support.gunicorn_process import free_port  # noqa: E402


def _estimate(events: dict[str, int]) -> float:
    """Callgrind's cycle estimate (KCachegrind's "CEst"): instructions, 10 per first-level miss, 100 per last-level."""
    first = events.get("I1mr", 0) + events.get("D1mr", 0) + events.get("D1mw", 0)
    last = events.get("ILmr", 0) + events.get("DLmr", 0) + events.get("DLmw", 0)
    return events["Ir"] + 10 * first + 100 * last


def _get(port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _worker_events(
    section: str, row: str, requests: int, endpoint: str, workdir: pathlib.Path, cache_sim: bool
) -> dict[str, int]:
    """Callgrind's totals for the worker from its boot to its exit, having served 1 + ``requests`` requests."""
    worker_class, extra, _, kind = SECTIONS[section]
    app, config = row_app_config(section, row)
    path = PATHS[kind]
    port = free_port()
    out = workdir / f"{section}-{row}-{requests}"
    out.mkdir()
    env = {
        **os.environ,
        **ROWS[row][2],
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "bench",
        # Only full batches leave before exit, as at saturation: under callgrind a
        # run takes many times its real time, and the schedule delay's partial
        # batches would follow the wall clock rather than the request count.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/%p", f"--cache-sim={'yes' if cache_sim else 'no'}",
        sys.executable, "-m", "gunicorn", *(["-c", config] if config else []),
        "-k", worker_class, "-w", "1", *extra, "--timeout", "600", "--no-control-socket",
        "-b", f"127.0.0.1:{port}", app,
    ]  # fmt: skip
    with open(out / "log", "w") as log:
        master = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while True:  # the one request that finds it ready is served: both runs have it
            try:
                if _get(port, path, 60) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or master.poll() is not None:
                raise SystemExit(f"{section}/{row} did not start:\n{(out / 'log').read_text()[-3000:]}")
            time.sleep(0.5)
        for _ in range(requests):
            status = _get(port, path, 60)
            if status != 200:
                raise SystemExit(f"{section}/{row}: status {status}")
        master.send_signal(signal.SIGTERM)
        master.wait(300)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(30)
    counts = {}
    for file in out.iterdir():
        if file.name.isdigit() and int(file.name) != master.pid:
            totals = callgrind_totals(file)
            if totals is not None:
                counts[file.name] = totals
    if len(counts) != 1:
        raise SystemExit(f"{section}/{row}: expected one worker's counts, found {sorted(counts)}")
    return next(iter(counts.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="sync,gthread,tornado,asgi,uvicorn,gevent")
    parser.add_argument("--rows", default="floor,ours")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument(
        "--cache-sim", action="store_true", help="also simulate caches: callgrind's cycle estimate per request"
    )
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="workers counted at once")
    args = parser.parse_args()
    rows = args.rows.split(",")
    if "ours_black_hole" in rows:  # its endpoint is bench/pinned.py's black hole, which this does not run
        parser.error("ours_black_hole is not measured here")
    if "floor" not in rows:
        rows.insert(0, "floor")
    sections = args.only.split(",")
    ports: multiprocessing.Queue = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ports, False, "asyncio"), daemon=True)
    sink.start()
    endpoint = f"http://127.0.0.1:{ports.get(timeout=10)}"
    small, large = args.requests, 3 * args.requests
    runs = [(s, r, n) for s in sections for r in rows for n in (small, large)]
    totals: dict[tuple[str, str, int], dict[str, int]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(args.jobs) as pool:
                futures = {
                    run: pool.submit(_worker_events, *run, endpoint, pathlib.Path(tmp), args.cache_sim) for run in runs
                }
                for run, future in futures.items():
                    totals[run] = future.result()
    finally:
        sink.terminate()
        sink.join(5)
    print(f"Python {sys.version.split()[0]}, one worker, {small} and {large} sequential requests\n")
    measures = [("instructions / request", lambda e: e["Ir"])]
    if args.cache_sim:
        measures.append(("cycle estimate / request", _estimate))
    for label, measure in measures:
        print("| worker class | " + " | ".join(f"{ROWS[r][0]}: {label}" for r in rows) + " |")
        print("|---|" + "---:|" * len(rows))
        for section in sections:
            per = {
                r: (measure(totals[section, r, large]) - measure(totals[section, r, small])) / (large - small)
                for r in rows
            }
            cells = [
                f"{per[r] / 1000:.1f}k" + ("" if r == "floor" else f" ({per['floor'] / per[r]:.2f}x)") for r in rows
            ]
            print(f"| {section} | " + " | ".join(cells) + " |")
        print()
    print("(x): the floor's count over the row's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
