"""``otel_lifespan``: one telemetry owner per process for FastAPI apps.

Two situations, told apart by whether ``gunicorn_otel.conf`` was loaded
(importing it calls ``hooks.load_settings()`` in the Gunicorn master, and
every worker inherits that state):

* **Hosted** (Gunicorn with ``-c python:gunicorn_otel.conf``): the hooks own
  the runtime.  It was built in ``post_fork``, before the app was loaded, and
  ``worker_exit`` shuts it down once, bounded by ``GUNICORN_OTEL_SHUTDOWN_TIMEOUT``.
  The lifespan reuses it and never builds one, and it does not flush at exit:
  ``worker_exit`` always follows the lifespan shutdown (Gunicorn's asgi worker
  calls it after the lifespan; for ``UvicornWorker`` our config restores it,
  see ``gunicorn_otel._master.hooks._restore_worker_exit_on_sigterm``), and a second flush here
  would spend the exit budget twice against a collector that does not answer.
* **Standalone** (plain ``uvicorn``, ``fastapi run``, Gunicorn without our
  config, test suites): the lifespan starts the runtime from the environment
  on first use.  The OpenTelemetry API sets each global provider once per
  process, so a runtime cannot be rebuilt after it is shut down: it lives as
  long as the process.  Each lifespan exit flushes it (bounded); one bounded
  shutdown runs at interpreter exit.  ``with TestClient(app)`` in a loop, or
  many app instances, reuse it and start no new export thread.
  Under ``UvicornWorker`` without our config the lifespan flush is the last
  chance: after serving, uvicorn re-raises the SIGTERM it captured
  (``Server.capture_signals`` in uvicorn/server.py calls ``signal.raise_signal``)
  with the default action, and neither ``worker_exit`` nor atexit runs.

A bad configuration fails lifespan startup with the settings module's message.
Starlette then sends ``lifespan.startup.failed``, on which Gunicorn's asgi
worker and uvicorn exit with code 3; the Gunicorn master stops on 3 instead of
crash-looping workers.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi_otel import auto_configure, server_spans

# Exit shutdown budget while the collector is known not to answer: enough to
# stop the pipelines and count what they held.
_EXIT_WHILE_STALLED = 0.5


class _Standalone:
    """What this module keeps for a runtime it started (never for a hosted one).

    ``stalled_at``: the runtime's exported count when a lifespan flush last
    missed its deadline, or None.  While nothing more has been exported since,
    the collector is taken as not answering and later lifespan exits do not
    wait for it again; without this a test suite with no collector running
    would spend the whole budget in every ``with TestClient(app)``.  The batch
    processors keep exporting in the background, and the first export that
    succeeds re-arms the flush.
    """

    atexit_registered = False
    stalled_at: int | None = None
    # Apps in TestClients on several threads may start up at once.
    start_lock = threading.Lock()


_standalone = _Standalone()


def _exported(current) -> int:
    return sum(counts["exported"] for counts in current.stats.snapshot().values())


def _stalled(current) -> bool:
    return _standalone.stalled_at is not None and _exported(current) == _standalone.stalled_at


def _flush_at_lifespan_exit(current) -> None:
    if _stalled(current):
        return
    # Blocking on purpose: the server has stopped taking requests and the
    # flush has its own deadline; an executor would leave a pool thread
    # behind per cycle.
    from gunicorn_otel._worker import runtime

    in_time = current.force_flush(runtime.Deadline.after(current.settings.shutdown_timeout))
    _standalone.stalled_at = None if in_time else _exported(current)


def _hosted() -> bool:
    from gunicorn_otel._worker import runtime

    return runtime.hosted()


def _start_standalone():
    """This process's runtime, started from the environment on first use."""
    from gunicorn_otel import settings
    from gunicorn_otel._worker import runtime

    with _standalone.start_lock:
        current = runtime.current()
        if current is not None and current.started:
            return current
        try:
            resolved = settings.load()
        except settings.SettingsError as exc:
            raise settings.SettingsError(f"gunicorn-otel: invalid configuration: {exc}") from None
        if not _standalone.atexit_registered:
            # Before start(), so a start that fails halfway is still shut down.
            # Inherited by forked children along with the flag; harmless there,
            # since a forked child's runtime.current() is None until it starts its own.
            _standalone.atexit_registered = True
            atexit.register(_shutdown_at_exit)
        current = runtime.get_or_create(resolved, model="asyncio")
        current.start()
        return current


def _shutdown_at_exit() -> None:
    from gunicorn_otel._worker import runtime

    current = runtime.current()
    if current is None:
        return
    budget = current.settings.shutdown_timeout
    if _stalled(current):
        budget = min(budget, _EXIT_WHILE_STALLED)
    current.shutdown(runtime.Deadline.after(budget))


@contextlib.asynccontextmanager
async def otel_lifespan(app: Any) -> AsyncIterator[None]:
    """``FastAPI(lifespan=otel_lifespan)``; ``with_otel`` adds a lifespan of your own."""
    hosted = _hosted()
    if hosted:
        from gunicorn_otel._worker import runtime

        current = runtime.current()  # None when telemetry is off or failed to start
    else:
        current = _start_standalone()
    auto_configure.disarm(current)
    server_spans.ensure_one_per_request(app, current)
    try:
        yield
    finally:
        if not hosted:
            _flush_at_lifespan_exit(current)


def with_otel(user_lifespan: Callable[[Any], Any]) -> Callable[[Any], contextlib.AbstractAsyncContextManager]:
    """Combine ``otel_lifespan`` with your own lifespan: telemetry starts first and flushes last.

    What your lifespan yields (lifespan state) is passed on, so it still
    reaches ``request.state``::

        @asynccontextmanager
        async def lifespan(app):
            async with make_pool() as pool:
                yield {"pool": pool}

        app = FastAPI(lifespan=with_otel(lifespan))

    ``user_lifespan`` is anything Starlette accepts as a lifespan: a function
    returning an async context manager (``@asynccontextmanager``, or FastAPI's
    default ``app.router.lifespan_context``, which runs ``on_startup``
    handlers), or an async generator function.  To add telemetry to an app
    that already exists::

        app.router.lifespan_context = with_otel(app.router.lifespan_context)
    """
    if inspect.isasyncgenfunction(user_lifespan):
        user_lifespan = contextlib.asynccontextmanager(user_lifespan)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with otel_lifespan(app):
            async with user_lifespan(app) as state:
                yield state

    return lifespan
