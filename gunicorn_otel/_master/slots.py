"""Stable worker slots 1..N, the number Gunicorn does not have (gunicorn #1352).

Given in the master in ``pre_fork``; the attribute travels with the worker
object into the child, where it becomes the ``gunicorn.worker.slot`` resource
attribute.  A replacement worker takes the lowest free slot, so the slot of a
worker that left is reused.
"""

from __future__ import annotations

ATTRIBUTE = "otel_slot"


def assign(server, worker) -> int:
    """Give ``worker`` the lowest slot no live worker of ``server`` holds."""
    taken = {getattr(w, ATTRIBUTE, None) for w in server.WORKERS.values()}
    slot = 1
    while slot in taken:
        slot += 1
    setattr(worker, ATTRIBUTE, slot)
    return slot


def of(worker) -> int | None:
    """The slot ``assign`` gave ``worker``; None for a worker we never saw."""
    return getattr(worker, ATTRIBUTE, None)
