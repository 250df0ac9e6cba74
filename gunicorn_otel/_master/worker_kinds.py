"""Which concurrency model a Gunicorn worker class uses, and where we build for it.

One table, not a code path per class (the SDK's one-BatchProcessor habit): the
runtime only needs to know the model (native threads or gevent greenlets) and
the hook at which building SDK objects is safe.

* Thread-based workers (sync, gthread, tornado, Gunicorn's asgi, uvicorn's
  worker) build in ``post_fork``: the first moment in the worker process, so
  nothing is ever built in the master and spans made during app import count.
* gevent workers must build after ``monkey.patch_all()``.  ``post_fork`` runs
  *before* patching (``gunicorn/workers/ggevent.py`` patches in
  ``init_process``), ``post_worker_init`` after it; SDK objects built earlier
  own a native thread and native locks that greenlets then share.

Classes are matched by ``(module, qualname)`` along the MRO, so custom
subclasses resolve to their base and nothing here imports gevent or uvicorn.
Reading ``server.cfg.worker_class`` is avoided on purpose: that property
re-imports the class and re-runs its ``setup()`` on every access.
"""

from __future__ import annotations

from dataclasses import dataclass

THREADS = "threads"
GEVENT = "gevent"

POST_FORK = "post_fork"
POST_WORKER_INIT = "post_worker_init"


@dataclass(frozen=True)
class WorkerKind:
    name: str
    model: str | None  # None: decide at post_worker_init from gevent's patch state
    build_at: str
    uvicorn_signals: bool = False  # uvicorn re-raises SIGTERM with SIG_DFL: no worker_exit


_TABLE = {
    ("gunicorn.workers.sync", "SyncWorker"): WorkerKind("sync", THREADS, POST_FORK),
    ("gunicorn.workers.gthread", "ThreadWorker"): WorkerKind("gthread", THREADS, POST_FORK),
    ("gunicorn.workers.gtornado", "TornadoWorker"): WorkerKind("tornado", THREADS, POST_FORK),
    ("gunicorn.workers.gasgi", "ASGIWorker"): WorkerKind("asgi", THREADS, POST_FORK),
    ("gunicorn.workers.ggevent", "GeventWorker"): WorkerKind("gevent", GEVENT, POST_WORKER_INIT),
    ("uvicorn_worker._workers", "UvicornWorker"): WorkerKind("uvicorn", THREADS, POST_FORK, uvicorn_signals=True),
    ("uvicorn.workers", "UvicornWorker"): WorkerKind("uvicorn", THREADS, POST_FORK, uvicorn_signals=True),
}

UNKNOWN = WorkerKind("unknown", None, POST_WORKER_INIT)


def classify(worker_class: type) -> WorkerKind:
    """The kind of the first known class in ``worker_class``'s MRO."""
    for cls in worker_class.__mro__:
        kind = _TABLE.get((cls.__module__, cls.__qualname__))
        if kind is not None:
            return kind
    return UNKNOWN


def table() -> dict[str, WorkerKind]:
    """Public view for docs and ``gunicorn-otel check``."""
    return {f"{m}.{q}": kind for (m, q), kind in _TABLE.items()}


def gevent_patched() -> bool:
    """True once gevent has patched ``threading`` in this process."""
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))
