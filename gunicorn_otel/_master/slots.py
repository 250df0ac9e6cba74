"""Stable worker slots 1..N, the number Gunicorn does not have (gunicorn #1352).

Given in the master in ``pre_fork``; the attribute travels with the worker
object into the child, where it becomes the ``gunicorn.worker.slot`` resource
attribute.  A replacement worker takes the lowest free slot, so the slot of a
worker that left is reused.  During a HUP reload the new workers take the
slots of the workers they replace (``retire_all``), so slots stay within 1..N.
"""

from __future__ import annotations

ATTRIBUTE = "otel_slot"
RETIRING = "otel_slot_retiring"


def assign(server, worker) -> int:
    """Give ``worker`` the lowest slot no live worker of ``server`` holds, retiring ones aside."""
    taken = {getattr(w, ATTRIBUTE, None) for w in server.WORKERS.values() if not getattr(w, RETIRING, False)}
    slot = 1
    while slot in taken:
        slot += 1
    setattr(worker, ATTRIBUTE, slot)
    return slot


def retire_all(server) -> None:
    """``on_reload``: the running workers are about to be replaced; they stop holding slots.

    ``Arbiter.reload`` calls ``on_reload``, spawns ``workers`` new workers while
    the old ones still run, then stops the oldest (``gunicorn/arbiter.py``).
    Without this the new workers would take slots N+1..2N; with it they take
    1..N, each sharing a slot with an old worker until that one has exited.
    """
    for worker in server.WORKERS.values():
        setattr(worker, RETIRING, True)


def of(worker) -> int | None:
    """The slot ``assign`` gave ``worker``; None for a worker we never saw."""
    return getattr(worker, ATTRIBUTE, None)
