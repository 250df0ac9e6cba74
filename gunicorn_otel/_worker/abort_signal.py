"""Make a timeout's SIGABRT reach ``worker_abort`` on the asyncio worker classes.

Two worker classes never run ``worker_abort`` when the master aborts them:

* Gunicorn's asgi worker registers SIGABRT with ``loop.add_signal_handler``
  (``ASGIWorker.init_signals``, ``gunicorn/workers/gasgi.py``).  Such a handler
  is only a callback the event loop runs on its next iteration; a timeout
  means the loop is blocked, so it never runs and the SIGKILL comes a second
  later with nothing recorded.
* uvicorn's worker resets SIGABRT to ``SIG_DFL`` (``UvicornWorker.init_signals``,
  ``uvicorn_worker/_workers.py``; Kludex/uvicorn-worker#32): the process dies at
  once, nothing runs.

``install`` runs in ``post_worker_init`` (after ``init_signals``) and puts a
plain Python signal handler on SIGABRT instead.  Python runs it in the main
thread between two bytecodes of whatever is running there, blocked loop or
not, so ``worker_abort`` gets its second.  Afterwards it does what the worker
meant to do: the asgi worker's ``sys.exit(1)`` (raised in the stuck code, so the
worker exits through its cleanup), and for uvicorn ``os._exit(1)``, because
uvicorn answers a ``SystemExit`` raised in the app with a 500 and keeps
serving.  Code stuck in C without releasing the GIL still cannot be
interrupted; then nothing in the process can run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

log = logging.getLogger(__name__)


def _remove_loop_handler(loop) -> bool:
    try:
        return bool(loop.remove_signal_handler(signal.SIGABRT))
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        return False


def install(worker) -> str | None:
    """Install the handler where SIGABRT would not run ``worker_abort``; returns which, or None."""
    loop = getattr(worker, "loop", None)
    if loop is not None and _remove_loop_handler(loop):
        signal.signal(signal.SIGABRT, lambda signum, frame: _abort(worker, then_exit=sys.exit))
        return "loop"
    if signal.getsignal(signal.SIGABRT) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGABRT, lambda signum, frame: _abort(worker, then_exit=_exit_now))
        return "default"
    return None


def _abort(worker, then_exit) -> None:
    worker.alive = False
    try:
        worker.cfg.worker_abort(worker)
    finally:
        then_exit(1)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream must not stop the exit
            log.debug("gunicorn-otel: could not flush %s before exiting", stream, exc_info=True)
    os._exit(code)
