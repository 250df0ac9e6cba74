"""Run blocking SDK calls against one deadline.

The SDK cannot bound its own exit: ``force_flush(timeout)`` ignores the timeout,
``TracerProvider.shutdown()`` takes none and may join for 30 s per processor,
and the OTLP exporters retry for ~10 s.  So each call runs in a helper and we
stop waiting at the deadline; a helper still stuck then is abandoned (daemon)
and dies with the process.

After ``gevent.monkey.patch_all()`` ``threading.Thread`` is a greenlet and
``join(timeout)`` yields to the hub, so the same code is cooperative under
gevent and creates no native thread there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("gunicorn_otel")


def run_all(calls: dict[str, Callable[[], object]], deadline: float) -> dict[str, bool]:
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
            except Exception:  # noqa: BLE001 - reported, never propagated
                log.exception("gunicorn-otel: %s failed", name)

        thread = threading.Thread(target=target, name=f"gunicorn-otel-{name}", daemon=True)
        thread.start()
        threads[name] = thread
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        done[name] = not thread.is_alive()
    return done
