"""Which concurrency model a Gunicorn worker class uses, and where we build for it.

One table, not a code path per class (the SDK's one-BatchProcessor habit): the
runtime only needs to know the concurrency model (native threads or gevent
greenlets) and the hook at which building SDK objects is safe.  A model name
here is a module of ``gunicorn_otel._worker.models``, which builds that model's
pipelines and does its setup; ``GUNICORN_OTEL_PROCESSOR`` and
``gunicorn-otel check`` resolve through ``PROCESSORS`` and ``pipeline_model``
below, nowhere else.  Adding a model: a name here, a row or two in ``_TABLE``,
and ``_worker/models/<name>.py``.

* Thread-based workers (sync, gthread, tornado: model ``threads``) and asyncio
  workers (Gunicorn's asgi, uvicorn's: model ``asyncio``) build in
  ``post_fork``: the first moment in the worker process, so nothing is ever
  built in the master and spans made during app import count.  For these
  two models the master imports, once, what their workers will import
  (``Model.warm_master``, from ``on_starting``).
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

# Concurrency models: each is a module of ``gunicorn_otel._worker.models``.
THREADS = "threads"
ASYNCIO = "asyncio"
GEVENT = "gevent"
SDK_BATCH = "sdk_batch"  # not a worker's model: the SDK's own batch processors, for comparison
SIMPLE = "simple"  # not a worker's model: inline export on the caller, for debugging

# Models whose workers may start from a master that imported their modules
# (``Model.warm_master``): native threads only, never gevent (nothing that
# imports ``ssl``/``urllib3``/``requests`` may run before ``patch_all``).
WARM_MASTER = (THREADS, ASYNCIO)

# ``GUNICORN_OTEL_PROCESSOR`` value -> the model whose pipelines are built
# (None: the worker class's own model).  The settings table validates against it.
PROCESSORS: dict[str, str | None] = {
    "auto": None,
    "threads": THREADS,
    "asyncio": ASYNCIO,
    "gevent": GEVENT,
    "batch": SDK_BATCH,
    "simple": SIMPLE,
}

DESCRIPTIONS = {
    THREADS: "threads (gunicorn-otel's thread batcher, one export thread per signal)",
    ASYNCIO: "asyncio (gunicorn-otel's thread batcher, fed by the event loop)",
    GEVENT: "gevent (greenlet batch processors)",
    SDK_BATCH: "SDK batch (the SDK's BatchSpanProcessor, one thread per signal)",
    SIMPLE: "simple (export inline; debugging)",
}

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
    ("gunicorn.workers.gasgi", "ASGIWorker"): WorkerKind("asgi", ASYNCIO, POST_FORK),
    ("gunicorn.workers.ggevent", "GeventWorker"): WorkerKind("gevent", GEVENT, POST_WORKER_INIT),
    ("uvicorn_worker._workers", "UvicornWorker"): WorkerKind("uvicorn", ASYNCIO, POST_FORK, uvicorn_signals=True),
    ("uvicorn.workers", "UvicornWorker"): WorkerKind("uvicorn", ASYNCIO, POST_FORK, uvicorn_signals=True),
}

UNKNOWN = WorkerKind("unknown", None, POST_WORKER_INIT)


def classify(worker_class: type) -> WorkerKind:
    """The kind of the first known class in ``worker_class``'s MRO."""
    for cls in worker_class.__mro__:
        kind = _TABLE.get((cls.__module__, cls.__qualname__))
        if kind is not None:
            return kind
    return UNKNOWN


def pipeline_model(worker_model: str, processor: str) -> str:
    """The model whose pipelines a worker of ``worker_model`` builds under ``GUNICORN_OTEL_PROCESSOR``."""
    return PROCESSORS[processor] or worker_model


def describe(kind: WorkerKind, processor: str) -> str:
    """What ``gunicorn-otel check`` prints for a worker kind: the same resolution the worker makes."""
    if kind.model is None and PROCESSORS[processor] is None:
        return f"{DESCRIPTIONS[GEVENT]} if patched at post_worker_init, else {DESCRIPTIONS[THREADS]}"
    return DESCRIPTIONS[pipeline_model(kind.model or THREADS, processor)]


def model_at_post_worker_init(kind: WorkerKind) -> str:
    """A known kind's model, or for an unknown class the one gevent's patch state says."""
    return kind.model or (GEVENT if gevent_patched() else THREADS)


def table() -> dict[str, WorkerKind]:
    """Public view for docs and ``gunicorn-otel check``."""
    return {f"{m}.{q}": kind for (m, q), kind in _TABLE.items()}


def gevent_patched() -> bool:
    """True once gevent has patched ``threading`` in this process."""
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))
