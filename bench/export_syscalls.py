"""System calls of a saturated worker's span export thread, per export.

    python bench/export_syscalls.py [--worker-class uvicorn] [--seconds 4] [--connections 32]

Starts one Gunicorn worker with gunicorn-otel (traces only) serving the
benchmark app (``bench/saturation_apps.py``), loads it with ``wrk``, attaches
``strace -c`` to the worker's span export thread for ``--seconds`` and prints
each system call's count per export (``recvfrom`` counts the exports: one
response read per export).  Every call releases the GIL, and a ``futex`` call
that timed out is one wait of the interpreter's switch interval for a busy
thread (request thread or event loop) to hand it back; docs/pipelines.md,
"Where the cost goes".

Needs ``strace`` and ``wrk`` (``apt-get install strace wrk``) and the right to
ptrace the worker (root, or ``kernel.yama.ptrace_scope=0``).  Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn_process import GunicornProcess  # noqa: E402
from tests.support.receiver import OTLPReceiver  # noqa: E402

CLASSES = {
    "sync": ("sync", "wsgi", "/"),
    "tornado": ("tornado", "wsgi", "/"),
    "asgi": ("asgi", "fastapi_ours", "/items/7"),
    "uvicorn": ("uvicorn_worker.UvicornWorker", "fastapi_ours", "/items/7"),
}


def export_thread(pid: int) -> int:
    """The thread id of the worker's span export thread.

    With traces only, ``ThreadBatcher`` starts it in ``post_fork``, before any thread
    the worker class starts (gthread's pool, a loop's executor), so it is the oldest
    thread after the main one.  Python before 3.14 does not give it its name at the
    OS level, so ``comm`` cannot tell.
    """
    tasks = sorted(int(task.name) for task in pathlib.Path(f"/proc/{pid}/task").iterdir())
    if len(tasks) < 2:
        raise SystemExit("the worker has no export thread: is the thread model in use?")
    return tasks[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-class", default="uvicorn", choices=sorted(CLASSES))
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    worker_class, app, path = CLASSES[args.worker_class]
    extra: tuple = ()
    with OTLPReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "bench",
        }
        with GunicornProcess(
            "bench.saturation_apps:" + app,
            worker_class=worker_class,
            workers=1,
            config="python:gunicorn_otel.conf",
            env=env,
            log_path=pathlib.Path(tmp) / "gunicorn.log",
            args=("--no-control-socket", *extra),
            ready_path=path,
        ) as proc:
            proc.start()
            (worker,) = proc.live_worker_pids()
            thread = export_thread(worker)
            load = subprocess.Popen(
                ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds + 3}s", proc.base_url + path],
                stdout=subprocess.DEVNULL,
            )
            try:
                # Attach once the load has reached the collector: the export thread is busy.
                if not receiver.wait_for(lambda: receiver.span_count() > 0, timeout=30):
                    raise SystemExit("no span reached the receiver under load")
                summary = pathlib.Path(tmp) / "strace.txt"
                subprocess.run(
                    ["timeout", str(args.seconds), "strace", "-c", "-p", str(thread), "-o", str(summary)],
                    capture_output=True,
                    check=False,
                )
            finally:
                load.wait(args.seconds + 60)
            text = summary.read_text()
    calls = {}
    errors = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] not in ("total",):
            calls[fields[-1]] = int(fields[3])
            errors[fields[-1]] = int(fields[4]) if len(fields) == 6 else 0
    exports = calls.get("recvfrom", 0)
    print(f"`python bench/export_syscalls.py --worker-class {args.worker_class} --seconds {args.seconds}`\n")
    print(f"{exports} exports in {args.seconds} s, one {args.worker_class} worker at saturation\n")
    print("| system call | per export | of which failed (futex: timed out) |\n|---|---:|---:|")
    for name, count in sorted(calls.items(), key=lambda item: -item[1]):
        per = count / max(exports, 1)
        print(f"| {name} | {per:.1f} | {errors[name] / max(exports, 1):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
