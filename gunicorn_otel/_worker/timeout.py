"""What a worker does when the master aborts it for a timeout (SIGABRT).

``worker_abort`` runs inside a signal handler, in the frame of the request that
blocked the worker, so the current stack and span are the stuck request's.
``record`` logs that stack as an error record (as before), ends the request
spans still open (``inflight``) and flushes, all within one deadline: the
master SIGKILLs at its next loop iteration, about a second after the SIGABRT
(``Arbiter.murder_workers`` in ``gunicorn/arbiter.py``).  On the asgi and
uvicorn workers the signal handler that calls ``worker_abort`` is ours
(``abort_signal``).

Imported in ``post_worker_init`` (``wiring``), never first inside the signal
handler: the interrupted code might hold the import lock.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

from opentelemetry import trace

from gunicorn_otel._master import forksafe, worker_kinds
from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker import runtime

log = logging.getLogger(__name__)


def record(deadline: Deadline) -> None:
    """Log the stuck stack, end the open request spans, flush; all by ``deadline``."""
    stack = "".join(traceback.format_stack(_stuck_frame()))
    logging.getLogger("gunicorn.error").error(
        "gunicorn-otel: worker %s timed out; request stack:\n%s", forksafe.pid(), stack
    )
    current = runtime.current()
    if current is None:
        return
    stuck = trace.get_current_span()  # read here, in the interrupted thread or greenlet
    only = threading.get_ident() if worker_kinds.gevent_patched() else None
    started = time.monotonic()
    ended = current.record_abort(deadline, stuck=stuck, stack=stack, only_ident=only)
    log.info(
        "gunicorn-otel: worker %s ended %d open request span(s) and flushed in %.3fs",
        forksafe.pid(),
        ended,
        time.monotonic() - started,
    )


def _stuck_frame():
    """The interrupted frame: the first one outside Gunicorn's and our signal handling."""
    frame = sys._getframe(1)
    while frame.f_back is not None and (
        frame.f_globals.get("__name__", "").startswith("gunicorn_otel")
        or frame.f_code.co_name in ("handle_abort", "handle_abort_signal")
    ):
        frame = frame.f_back
    return frame
