"""``otel_lifespan``: one telemetry owner per process for FastAPI apps.

Under Gunicorn with ``gunicorn_otel.conf`` the worker's runtime already exists
(built in ``post_fork``) and the lifespan only reuses and flushes it.  Anywhere
else (plain ``uvicorn``, ``fastapi run``, Gunicorn without our config, test
suites) the lifespan starts the runtime from the environment.

Facts this relies on:

* The OpenTelemetry API sets each global provider once per process, so a
  runtime can't be rebuilt after it is shut down.  The standalone runtime
  therefore lives as long as the process: each lifespan exit flushes it
  (bounded), and one bounded shutdown runs at interpreter exit.  ``with
  TestClient(app)`` in a loop, or many app instances, reuse it: no new export
  threads.
* ``uvicorn_worker.UvicornWorker`` runs the lifespan shutdown on SIGTERM and
  then re-raises the signal with the default action: the flush here is the last
  chance unless our config restored ``worker_exit``.
* A startup failure must fail the lifespan: Starlette then reports
  ``lifespan.startup.failed`` and Gunicorn's asgi worker and uvicorn exit with
  code 3, which stops the Gunicorn master instead of crash-looping workers.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable

from fastapi_otel import server_spans

log = logging.getLogger("gunicorn_otel")

_atexit_registered = False


def _runtime():
    """This process's started runtime, creating it from the environment if needed."""
    global _atexit_registered
    from gunicorn_otel import runtime, settings

    current = runtime.current()
    if current is not None and current.started:
        return current
    try:
        resolved = settings.load()
    except settings.SettingsError as exc:
        raise RuntimeError(f"gunicorn-otel: invalid configuration: {exc}") from None
    current = runtime.get_or_create(resolved, processor="batch")
    current.start()
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_shutdown_at_exit)
    return current


def _shutdown_at_exit() -> None:
    from gunicorn_otel import runtime

    current = runtime.current()
    if current is not None:
        current.shutdown(time.monotonic() + current.settings.shutdown_timeout)


@contextlib.asynccontextmanager
async def otel_lifespan(app: Any) -> AsyncIterator[None]:
    """``FastAPI(lifespan=otel_lifespan)``; see ``with_otel`` to add your own lifespan."""
    current = _runtime()
    server_spans.ensure_one_server_span(app)
    try:
        yield
    finally:
        # Blocking on purpose: the server is stopping, and the flush has its
        # own deadline.  Off-loop helpers would add threads per cycle.
        current.force_flush(time.monotonic() + current.settings.shutdown_timeout)


def with_otel(user_lifespan: Callable[[Any], contextlib.AbstractAsyncContextManager]) -> Callable:
    """Combine ``otel_lifespan`` with your own: telemetry starts first and flushes last.

    Whatever your lifespan yields (a dict of lifespan state) is yielded on, so
    it still reaches ``request.state``::

        @asynccontextmanager
        async def lifespan(app):
            async with make_pool() as pool:
                yield {"pool": pool}

        app = FastAPI(lifespan=with_otel(lifespan))
    """

    @contextlib.asynccontextmanager
    async def combined(app: Any) -> AsyncIterator[Any]:
        async with otel_lifespan(app):
            async with user_lifespan(app) as state:
                yield state

    return combined
