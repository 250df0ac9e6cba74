"""The serving process: ``python -m gunicorn_otel._prometheus --fd N --dir D --parent PID``.

The Gunicorn master binds the endpoint's socket (so a port in use stops
Gunicorn at start), then starts this process with ``subprocess`` (fork and
exec: nothing of the master's threads or locks comes along) and hands it the
listening socket.  Here, and only here, threads are free: nothing forks from
this process.  It serves prometheus_client's WSGI app (text format or
OpenMetrics by the scrape's ``Accept`` header, gzip) over a registry whose one
collector returns ``Store.collect()``.

It dies with the master: a thread checks the parent pid twice a second and,
when the master is gone (even SIGKILLed), removes the snapshot directory and
exits.  The master stops it in ``on_exit`` and starts a new one if it dies.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from gunicorn_otel._prometheus.store import Store

log = logging.getLogger("gunicorn_otel.prometheus")

PARENT_CHECK_SECONDS = 0.5


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # the base class names it "format"
        pass


class MergedCollector:
    """A prometheus_client collector over the store, plus two series about the endpoint itself."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        from prometheus_client.metrics_core import Metric

        for name, typ, help_, unit, samples in self.store.collect():
            metric = Metric(name, help_, typ, unit)
            for sample_name, labels, value in samples:
                metric.add_sample(sample_name, labels, value)
            yield metric
        exited = Metric(
            "gunicorn_otel_prometheus_exited_workers",
            "Exited workers whose last values were merged into the endpoint's baseline",
            "counter",
        )
        exited.add_sample("gunicorn_otel_prometheus_exited_workers_total", {}, self.store.absorbed_total)
        yield exited


def serve(fd: int, directory: str, parent: int, compact_every: float, ready_fd: int | None = None) -> None:
    from prometheus_client import CollectorRegistry, make_wsgi_app

    store = Store(directory)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector(store))

    sock = socket.socket(fileno=fd)
    server = _Server(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    host, port = sock.getsockname()[:2]
    server.server_name, server.server_port = host, port
    server.setup_environ()
    server.set_app(make_wsgi_app(registry))

    def watch_parent() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                log.info("gunicorn-otel: master %s is gone; the Prometheus endpoint stops", parent)
                shutil.rmtree(directory, ignore_errors=True)
                os._exit(0)

    def compact() -> None:
        while True:
            time.sleep(compact_every)
            try:
                store.compact()
            except Exception:  # keep serving; the next scrape compacts again
                log.exception("gunicorn-otel: Prometheus snapshot compaction failed")

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    threading.Thread(target=compact, name="compaction", daemon=True).start()
    log.info("gunicorn-otel: Prometheus endpoint (pid %s) serving http://%s:%s/metrics", os.getpid(), host, port)
    if ready_fd is not None:  # the master waits for this at start
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    server.serve_forever(poll_interval=0.5)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gunicorn_otel._prometheus")
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the master")
    parser.add_argument("--dir", required=True, help="snapshot directory")
    parser.add_argument("--parent", type=int, required=True, help="the master's pid")
    parser.add_argument("--compact-every", type=float, default=1.0, help="seconds between compactions")
    parser.add_argument("--ready-fd", type=int, default=None, help="pipe to write one byte to once serving")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S %z",
    )
    if os.getppid() != args.parent:
        return  # the master died while starting us
    # Ctrl-C in a terminal and a closing terminal reach the whole process group;
    # the master decides when this process stops (on_exit), not the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    serve(args.fd, args.dir, args.parent, args.compact_every, args.ready_fd)


if __name__ == "__main__":
    main()
