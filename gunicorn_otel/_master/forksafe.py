"""The one after-fork mechanism: a registry of callbacks run in every forked child.

Anything that must not outlive a fork (a runtime, the master's telemetry, a
batcher's queue holding the parent's items) either registers a callback here or
remembers ``generation`` when it is built and compares it later.  The idea is
the one of ddtrace's ``internal/forksafe.py`` and prometheus_client's
``values.py`` (an owner pid, reset after fork), written for our needs:

* ``pid()`` is the current pid, cached and updated in the child: no system
  call per use.
* ``generation`` counts forks as seen by this process (0 in the process that
  imported us first, +1 in each child, +2 in a grandchild).  Comparing one
  integer is what the hot paths do (the gevent ``on_end`` runs per span).
* ``register(callback)`` runs ``callback()`` in the child right after fork,
  in registration order, after ``logging``'s own after-fork hook (this module
  imports ``logging`` before registering), so a callback may touch logging.

Python runs ``os.register_at_fork`` hooks for ``os.fork()`` (Gunicorn's
``Arbiter.spawn_worker``, multiprocessing's fork start method), not for a fork
made by C code that bypasses ``PyOS_AfterFork_Child``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

generation = 0
_pid = os.getpid()
_callbacks: list[Callable[[], None]] = []


def pid() -> int:
    """This process's pid, without a system call."""
    return _pid


def register(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback()`` in every child forked from now on; usable as a decorator."""
    _callbacks.append(callback)
    return callback


def unregister(callback: Callable[[], None]) -> None:
    try:
        _callbacks.remove(callback)
    except ValueError:
        pass


def _after_fork_in_child() -> None:
    global generation, _pid
    generation += 1
    _pid = os.getpid()
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # one failing callback must not cost the others, or the fork
            log.debug("gunicorn-otel: after-fork callback %r failed", callback, exc_info=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
