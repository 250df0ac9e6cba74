"""The master imports the worker's modules for thread and asyncio classes only, and freezes the GC.

Observed from outside: an extension module that only ``requests`` loads here
(``charset_normalizer``'s ``md``) is mapped in the master's memory, or not (it
must not be under gevent: ``requests`` imported before patching stays
unpatched); a worker reports ``gc.get_freeze_count()``.  Telemetry still flows with and without
``--preload`` (the freeze happens after the app is loaded in the master).
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import otel_env

REQUESTS_EXTENSION = "charset_normalizer/md."


def master_maps(proc) -> str:
    with open(f"/proc/{proc.master_pid}/maps") as f:
        return f.read()


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
@pytest.mark.parametrize(
    "worker_class, app, args",
    [
        ("sync", "wsgi_app:app", ()),
        ("gthread", "wsgi_app:app", ("--threads", "4")),
        ("asgi", "asgi_app:app", ()),
    ],
)
def test_thread_and_asyncio_workers_start_from_a_warm_frozen_master(
    worker_class, app, args, preload, receiver, gunicorn
):
    args = (*args, "--preload") if preload else args
    proc = gunicorn(app, worker_class=worker_class, workers=2, args=args, env=otel_env(receiver.endpoint))
    assert REQUESTS_EXTENSION in master_maps(proc)
    assert int(proc.get("/gc-frozen")[1]) > 0
    for _ in range(10):
        assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    assert len([s for s in receiver.spans() if s.name == "work"]) == 10


def test_gc_freeze_can_be_turned_off(receiver, gunicorn):
    env = otel_env(receiver.endpoint, GUNICORN_OTEL_GC_FREEZE="false")
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=1, env=env)
    assert REQUESTS_EXTENSION in master_maps(proc)
    assert int(proc.get("/gc-frozen")[1]) == 0


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gevent_master_imports_nothing_heavy(preload, receiver, gunicorn):
    args = ("--preload",) if preload else ()
    proc = gunicorn("wsgi_app:app", worker_class="gevent", workers=1, args=args, env=otel_env(receiver.endpoint))
    assert REQUESTS_EXTENSION not in master_maps(proc)
    assert int(proc.get("/gc-frozen")[1]) == 0
    assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    assert len([s for s in receiver.spans() if s.name == "work"]) == 1
