"""Apps for ``bench/saturation.py``: requests counted exactly, per worker, whatever the exit path.

Each worker keeps its count of served requests in ``$BENCH_COUNT_DIR/<pid>``,
rewritten in place with one ``pwrite`` per request (a system call, the same in
every row).  An ``atexit`` count would be lost where the process dies by a
signal (``UvicornWorker`` without our config re-raises SIGTERM with SIG_DFL).

* ``wsgi``: ``bench.apps.app`` (4 spans with 3 attributes per request);
* ``fastapi``: a FastAPI hello world; FastAPI >= 0.163 makes its own spans
  (server span plus operation spans) into whatever global provider is set;
* ``fastapi_ours``: the same app with ``lifespan=otel_lifespan``.

Apps are built when Gunicorn asks for them, so the uninstrumented rows never
import OpenTelemetry's SDK.
"""

from __future__ import annotations

import os


class _Counter:
    def __init__(self) -> None:
        self.fd = None
        self.pid = None
        self.count = 0

    def tick(self) -> None:
        pid = os.getpid()
        if self.pid != pid:  # first request in this worker
            self.pid, self.count = pid, 0
            directory = os.environ.get("BENCH_COUNT_DIR")
            self.fd = os.open(os.path.join(directory, str(pid)), os.O_CREAT | os.O_WRONLY) if directory else None
        self.count += 1
        if self.fd is not None:
            os.pwrite(self.fd, b"%12d" % self.count, 0)


_counter = _Counter()


def _wsgi():
    from bench.apps import app as inner

    def app(environ, start_response):
        body = inner(environ, start_response)
        _counter.tick()
        return body

    return app


def _fastapi(ours: bool = False):
    from fastapi import FastAPI

    kwargs = {}
    if ours:
        from fastapi_otel import otel_lifespan

        kwargs["lifespan"] = otel_lifespan
    app = FastAPI(**kwargs)

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        _counter.tick()
        return {"item_id": item_id}

    return app


_VARIANTS = {"wsgi": _wsgi, "fastapi": _fastapi, "fastapi_ours": lambda: _fastapi(ours=True)}


def __getattr__(name: str):
    if name not in _VARIANTS:
        raise AttributeError(name)
    app = globals()[name] = _VARIANTS[name]()
    return app
