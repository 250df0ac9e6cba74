"""Don't lose a stop signal that reaches a worker while it boots.

Between ``fork`` and the worker's own ``init_signals`` a child runs with the
master's Python signal handlers, which only queue the signal for the master's
loop, a loop the child never runs: a SIGTERM sent then (a reload or a stop right
after a respawn) is silently lost, and the master waits ``graceful_timeout``
before SIGKILLing the worker.  Building telemetry in ``post_fork`` makes that
window longer, so we close it: ``post_fork`` installs handlers that remember
the signal, Gunicorn's ``init_signals`` replaces them, and ``post_worker_init``
ends a worker that was asked to stop before it serves anything.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

_pending: list[int] = []


def _remember(signum, frame) -> None:
    _pending.append(signum)


def install() -> None:
    _pending.clear()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember)


def pending() -> int | None:
    """The first stop signal received during boot, if any."""
    return _pending[0] if _pending else None
