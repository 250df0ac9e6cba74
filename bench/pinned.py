"""CPU per request of one Gunicorn worker, for several configurations side by side.

    python bench/pinned.py [--only sync,uvicorn] [--rows floor,ours,ours_thread] [--rounds 11]
                           [--seconds 2] [--no-pin] [--sink http.server|asyncio] [--together]

``bench/saturation.py`` runs each row in turn, with the load generator, the
receiver and two workers sharing both cores: its ratios move by +-0.1 between
runs.  This one narrows the question to "how much CPU does the worker spend
per request, against the SDK floor":

* each configuration's Gunicorn (one worker) stays up for the whole run;
* by default the worker (all its threads) runs on CPU 1 and ``wrk`` (one
  thread) and a minimal OTLP/HTTP sink on CPU 0; ``--no-pin`` leaves every
  process to the scheduler, as in production, where an export thread may run
  on the other core.  The sink's own CPU is taken from ``wrk``'s core:
  ``--sink asyncio`` answers the same requests for less of it than the
  default ``http.server`` (a thread and header objects per request);
* rounds interleave the configurations (floor first, then each row), and each
  round reads the worker's CPU clock (``/proc/PID/stat``: all its threads)
  before and after ``--seconds`` of load, after 1 s of unmeasured warm-up
  per server;
* each row's round is compared with the floor's round just before it (the
  machine's speed drifts between rounds; next to each other they drift
  together), or with ``--together``, with a floor round run at the same
  time: each row and the floor are loaded at once, both workers on CPU 1
  and a ``wrk`` each on CPU 0, so a change in the machine's speed (another
  tenant, the host) falls on both; each shares its CPU with the other, as
  workers share a machine's cores.  The table gives the median of those
  ratios and each round's, the median and least CPU us per request, the worker's voluntary plus
  involuntary context switches per request, and wrk's p99 latency (median
  of rounds; for rows other than ``floor`` and ``ours``, also the median of
  each round's p99 over the ``ours`` round's before it, when ``ours`` runs).

Sections: the WSGI app (``bench.apps.app``, 4 spans per request: one parent and 3
children, or 4 sibling roots with ``--shape flat``) under sync,
gthread and tornado; FastAPI's native telemetry (hello world) under asgi and
UvicornWorker; gevent.  Rows: ``floor`` (always run; the provider set in
``post_fork``, gevent included), ``floor_proxy`` (set in ``post_worker_init``,
after Gunicorn imported the app, whose tracer is then a ``ProxyTracer``: what
gevent workers did before 2026-12-03; meaningful for the WSGI app, whose tracer
is taken at import), ``uninstrumented``,
``upstream``, ``ours``, ``ours_thread`` (``GUNICORN_OTEL_SEND_AHEAD=false``),
``ours_python`` (``GUNICORN_OTEL_NATIVE_ENCODER=false``: the Python span encoder),
``ours_none`` (``OTEL_TRACES_EXPORTER=none``), ``ours_black_hole`` (gunicorn-otel
exporting to a socket that accepts connections and never answers: its p99
is compared with the ``ours`` round just before it, issue #13's "black-hole
p99 within 10% of a healthy run"), and the span path cut short
after the processor, the encoder or the queue (``cut_processor``,
``cut_encode``, ``cut_queue``: ``bench/configs/ours_cut_short.py``), which
show where the cost beyond the floor goes.  Not part of the test suite;
figures in docs/pipelines.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import http.server
import multiprocessing
import os
import pathlib
import re
import socketserver
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.apps import SHAPES, describe  # noqa: E402
from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import blackhole  # noqa: E402

# section -> (worker class, extra gunicorn args, wrk connections, app kind)
SECTIONS = {
    "sync": ("sync", (), 1, "wsgi"),
    "gthread": ("gthread", ("--threads", "8"), 16, "wsgi"),
    "tornado": ("tornado", (), 16, "wsgi"),
    "asgi": ("asgi", (), 16, "fastapi"),
    "uvicorn": ("uvicorn_worker.UvicornWorker", (), 16, "fastapi"),
    "gevent": ("gevent", ("--worker-connections", "1000"), 50, "wsgi"),
}
OURS_ENV = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
# row -> (description, gunicorn config or None, environment)
ROWS: dict[str, tuple[str, str | None, dict]] = {
    "uninstrumented": ("uninstrumented", None, {}),
    "floor": ("SDK floor (made, never exported)", "python:bench.configs.sdk_floor_post_fork", {}),
    "floor_proxy": (
        "SDK floor, provider set after the app is imported (its tracer a ProxyTracer)",
        "python:bench.configs.sdk_floor",
        {},
    ),
    "upstream": ("upstream recipe (BSP in post_fork)", "python:bench.configs.upstream_post_fork", {}),
    "ours": ("gunicorn-otel", "python:gunicorn_otel.conf", OURS_ENV),
    "ours_thread": (
        "gunicorn-otel, every batch by the export thread (GUNICORN_OTEL_SEND_AHEAD=false)",
        "python:gunicorn_otel.conf",
        {**OURS_ENV, "GUNICORN_OTEL_SEND_AHEAD": "false"},
    ),
    # Its endpoint is replaced by a black hole (``run_section``).
    "ours_black_hole": ("gunicorn-otel, black-hole collector", "python:gunicorn_otel.conf", OURS_ENV),
    "ours_python": (
        "gunicorn-otel, Python span encoder (GUNICORN_OTEL_NATIVE_ENCODER=false)",
        "python:gunicorn_otel.conf",
        {**OURS_ENV, "GUNICORN_OTEL_NATIVE_ENCODER": "false"},
    ),
    "ours_none": (
        "gunicorn-otel, OTEL_TRACES_EXPORTER=none",
        "python:gunicorn_otel.conf",
        {**OURS_ENV, "OTEL_TRACES_EXPORTER": "none"},
    ),
    # The span path cut short (bench/configs/ours_cut_short.py): where the cost beyond the floor goes.
    **{
        f"cut_{step}": (
            f"gunicorn-otel, {what}",
            "python:bench.configs.ours_cut_short",
            {**OURS_ENV, "BENCH_CUT": step},
        )
        for step, what in (
            ("processor", "span processor only (nothing encoded)"),
            ("encode", "spans encoded and thrown away"),
            ("queue", "spans encoded and queued, nothing sent"),
        )
    },
}
PATHS = {"wsgi": "/", "fastapi": "/items/7"}


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


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


class _AsyncioSink(asyncio.Protocol):
    """The same answers as ``_Sink`` for less CPU: one event loop, no header objects.

    HTTP/1.1 with kept-alive connections and ``Content-Length`` framing, which
    is what the exporters and send-ahead send; every request gets 200 with an
    empty body.
    """

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.needed = -1  # bytes of the current request (headers and body), once its headers are in

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.needed < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                length = 0
                for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.needed = end + 4 + length
            if len(buffer) < self.needed:
                return
            del buffer[: self.needed]
            self.needed = -1
            self.transport.write(_OK)


def _serve(port_queue, pin: bool, kind: str = "http.server") -> None:
    if pin:
        os.sched_setaffinity(0, {0})
    if kind == "asyncio":
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(loop.create_server(_AsyncioSink, "127.0.0.1", 0))
        port_queue.put(server.sockets[0].getsockname()[1])
        loop.run_forever()
        return
    http_server = _Server(("127.0.0.1", 0), _Sink)
    port_queue.put(http_server.server_address[1])
    http_server.serve_forever()


def row_app_config(section: str, row: str) -> tuple[str, str | None]:
    kind = SECTIONS[section][3]
    app = "bench.saturation_apps:" + ("wsgi" if kind == "wsgi" else "fastapi")
    config = ROWS[row][1]
    if kind == "fastapi" and row.startswith(("ours", "cut_")):
        app += "_ours"
    return app, config


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads started later inherit it)."""
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def worker_cpu(pid: int) -> tuple[float, int]:
    """(CPU seconds of every thread, context switches of every thread) of ``pid``."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        switches += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return cpu, switches


_P99 = re.compile(r"99%\s+([\d.]+)(us|ms|s)\b")


def wrk(port: int, path: str, connections: int, seconds: int, pin: bool = True) -> tuple[int, float]:
    """(requests served, p99 latency in ms) of one wrk run."""
    out = subprocess.run(
        (["taskset", "-c", "0"] if pin else [])
        + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match, p99 = re.search(r"(\d+) requests in", out), _P99.search(out)
    if not match or not p99:
        raise RuntimeError(f"wrk printed no request count or p99:\n{out}")
    return int(match.group(1)), float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]


def _stop(servers: dict) -> None:
    for server in servers.values():
        server.stop()


def run_section(section: str, rows: list[str], args, endpoint: str, workdir: pathlib.Path) -> tuple[dict, dict]:
    worker_class, extra, connections, kind = SECTIONS[section]
    path = PATHS[kind]
    servers = {}
    with contextlib.ExitStack() as stack:
        hole = stack.enter_context(blackhole()).endpoint if "ours_black_hole" in rows else ""
        stack.callback(_stop, servers)
        for row in rows:
            app, config = row_app_config(section, row)
            env = {
                **ROWS[row][2],
                "OTEL_EXPORTER_OTLP_ENDPOINT": hole if row == "ours_black_hole" else endpoint,
                "OTEL_SERVICE_NAME": "bench",
                "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": "2",
                "APP_SPAN_SHAPE": args.shape,
            }
            server = GunicornProcess(
                app,
                worker_class=worker_class,
                config=config,
                args=extra,
                env=env,
                log_path=workdir / f"{section}-{row}.log",
                ready_path=path,
            )
            servers[row] = server.start()
            if args.pin:
                for pid in (server.master_pid, *server.worker_pids()):
                    pin(pid, 1)
            # Warm-up; against the black hole it also passes the one capped wait at
            # its onset (docs/pipelines.md), as exports then stop being healthy.
            wrk(server.port, path, connections, 1, args.pin)
        results: dict[str, list[tuple[float, float, float]]] = {row: [] for row in rows}
        # The floor runs each row's ratios are taken against: the floor's own, one
        # after the other, or with --together those made at the same time as the row's.
        floors = {row: [] if args.together else results["floor"] for row in rows[1:]}
        for _ in range(args.rounds):
            if args.together:
                # Both workers on one CPU: the machine's speed changes under both alike.
                for row in rows[1:]:
                    floor, measured = _loaded_together((servers["floor"], servers[row]), path, connections, args)
                    floors[row].append(floor)
                    results[row].append(measured)
                continue
            for row in rows:
                server = servers[row]
                pid = server.worker_pids()[0]
                cpu0, cs0 = worker_cpu(pid)
                served, p99 = wrk(server.port, path, connections, args.seconds, args.pin)
                cpu1, cs1 = worker_cpu(pid)
                results[row].append(((cpu1 - cpu0) * 1e6 / served, (cs1 - cs0) / served, p99))
        if args.together:  # the floor's own line: its runs beside the first row
            results["floor"] = floors[rows[1]]
        floors["floor"] = results["floor"]
        return results, floors


def _loaded_together(pair, path: str, connections: int, args) -> list[tuple[float, float, float]]:
    """(CPU us per request, context switches per request, p99 ms) of each server, loaded at once."""
    pids = [server.worker_pids()[0] for server in pair]
    before = [worker_cpu(pid) for pid in pids]
    with concurrent.futures.ThreadPoolExecutor(len(pair)) as pool:
        runs = list(pool.map(lambda server: wrk(server.port, path, connections, args.seconds, args.pin), pair))
    after = [worker_cpu(pid) for pid in pids]
    return [
        ((cpu1 - cpu0) * 1e6 / served, (cs1 - cs0) / served, p99)
        for (served, p99), (cpu0, cs0), (cpu1, cs1) in zip(runs, before, after, strict=True)
    ]


def print_section(section: str, results: dict, floors: dict, pinned: bool, shape: str, together: bool = False) -> None:
    worker_class, extra, connections, kind = SECTIONS[section]
    where = "worker on CPU 1, wrk and sink on CPU 0" if pinned else "not pinned"
    if together:
        where = "each row's worker and a floor worker on CPU 1, loaded at the same time; wrk and sink on CPU 0"
    app = f"4 spans/request, {describe(shape, 4)}" if kind == "wsgi" else "FastAPI native telemetry"
    print(f"\n### {section} (`-k {worker_class} -w 1 {' '.join(extra)}`, {app}, {where}; wrk -t1 -c{connections})\n")
    print(
        "| configuration | CPU us/req (median) | least | floor / row (median of rounds) | rounds' floor / row "
        "| context switches / req | p99 ms (median) | p99 / ours' p99 (median of rounds) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---|")
    ours_p99 = [p for _, _, p in results.get("ours", ())]
    for row, runs in results.items():
        # Each round's row ran right after the same round's floor (or, with
        # --together, at the same time): their ratio cancels the drift of the
        # machine's speed between rounds.
        floor = [c for c, _, _ in floors[row]]
        cpu = [c for c, _, _ in runs]
        ratios = [f / c for f, c in zip(floor, cpu, strict=True)]
        switches = statistics.median(s for _, s, _ in runs)
        spread = "/".join(f"{r:.2f}" for r in ratios)
        p99 = [p for _, _, p in runs]
        versus = "n/a"
        if ours_p99 and row not in ("floor", "ours"):
            # Paired by round, as the CPU ratios are (the ours row runs in the same round;
            # with --together, beside a floor worker, so not comparable with a sequential run's).
            p99_ratios = [p / o for p, o in zip(p99, ours_p99, strict=True)]
            versus = f"{statistics.median(p99_ratios):.2f}x (" + "/".join(f"{r:.2f}" for r in p99_ratios) + ")"
        print(
            f"| {ROWS[row][0]} | {statistics.median(cpu):.0f} | {min(cpu):.0f} | {statistics.median(ratios):.2f}x "
            f"| {spread} | {switches:.2f} | {statistics.median(p99):.1f} | {versus} |"
        )
    if together:
        print(
            "\nEach row's ratios are against the floor's runs made at the same time as that row's; "
            "the floor's line shows those made beside the first row."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="sync,gthread,tornado,asgi,uvicorn,gevent")
    parser.add_argument("--rows", default="floor,ours")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="let the scheduler place every process")
    parser.add_argument(
        "--together",
        action="store_true",
        help="load each row at the same time as the floor (both workers on one CPU, a wrk each), not one after the other",
    )
    parser.add_argument(
        "--sink",
        choices=("http.server", "asyncio"),
        default="http.server",
        help="the OTLP receiver: http.server (a thread per connection) or asyncio (one loop, less CPU)",
    )
    parser.add_argument("--shape", choices=SHAPES, default="nested", help="the WSGI app's spans (bench/apps.py)")
    args = parser.parse_args()
    if os.cpu_count() is None or len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    rows = [row for row in args.rows.split(",") if row != "floor"]
    rows.insert(0, "floor")  # first: the others are compared with it
    if args.together and len(rows) < 2:
        parser.error("--together needs a row besides the floor")
    if args.together and not args.pin:
        parser.error("--together puts both workers on one CPU: it needs pinning")
    ports: multiprocessing.Queue = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ports, args.pin, args.sink), daemon=True)
    sink.start()
    endpoint = f"http://127.0.0.1:{ports.get(timeout=10)}"
    import tempfile

    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds of {args.seconds:g} s per row, "
        f"{'each row loaded together with the floor' if args.together else 'interleaved'}, {args.sink} sink"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for section in args.only.split(","):
                results, floors = run_section(section, rows, args, endpoint, pathlib.Path(tmp))
                print_section(section, results, floors, args.pin, args.shape, args.together)
                sys.stdout.flush()
    finally:
        sink.terminate()
        sink.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
