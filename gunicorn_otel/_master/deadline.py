"""The one exit clock: a ``Deadline`` made in a hook and passed down to every processor.

A hook (``worker_exit``, ``worker_abort``, the FastAPI lifespan's exit) makes one
``Deadline`` from ``GUNICORN_OTEL_SHUTDOWN_TIMEOUT``; ``Runtime.shutdown`` and
``force_flush`` take it, share it between signals and hand it to each
processor's ``shutdown``, so there is no second clock to disagree with.

The SDK cannot bound its own exit: ``force_flush(timeout)`` ignores the timeout,
``TracerProvider.shutdown()`` takes none and may join for 30 s per processor,
and the OTLP exporters retry for ~10 s.  So ``run_all`` runs each blocking call
in a helper and stops waiting at the deadline; a helper still stuck then is
abandoned (daemon) and dies with the process.

After ``gevent.monkey.patch_all()`` ``threading.Thread`` is a greenlet and
``join(timeout)`` yields to the hub, so the same code is cooperative under
gevent and creates no native thread there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Deadline:
    """A moment on ``time.monotonic()``'s clock; immutable."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def remaining_millis(self) -> float:
        return self.remaining() * 1000.0

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def earlier_by(self, seconds: float) -> Deadline:
        """The same deadline minus a reserve kept for what runs after."""
        return Deadline(self.at - seconds)

    def __repr__(self) -> str:
        return f"Deadline(in {self.at - time.monotonic():.3f}s)"


def run_all(calls: dict[str, Callable[[], object]], deadline: Deadline) -> dict[str, bool]:
    """Start every call at once, wait until each ends or ``deadline`` passes.

    Returns name -> finished in time.  Exceptions are logged, never raised:
    a failing exporter must not turn a worker's clean exit into a traceback.
    """
    done: dict[str, bool] = {}
    threads = {}
    for name, call in calls.items():

        def target(name: str = name, call: Callable[[], object] = call) -> None:
            try:
                call()
            except Exception:  # reported, never propagated
                log.exception("gunicorn-otel: %s failed", name)

        thread = threading.Thread(target=target, name=f"gunicorn-otel-{name}", daemon=True)
        thread.start()
        threads[name] = thread
    for name, thread in threads.items():
        thread.join(deadline.remaining())
        done[name] = not thread.is_alive()
    return done
