"""A sustained drop is said in the log while it happens, at most once per interval.

Counts by reason go to the exit line and the ``gunicorn_otel.dropped`` metric
(``stats``); neither is seen by someone tailing the log while a collector is
down.  A pipeline calls ``dropped(n)`` for every item it drops for the reason
this notice is about (a full queue; an item no encoder can write); the first
drop is logged at once (with the traceback, if one is given), later ones are
summed and logged when ``interval`` has passed since the last line.  The hot
path is an addition and a clock read.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

QUEUE_FULL_TEXT = "the export queue is full (collector slow, down or not keeping up); counted as queue_full"
UNENCODABLE_TEXT = "no encoder could write them; counted as export_failed"


class DropNotice:
    def __init__(self, signal: str, reason: str = QUEUE_FULL_TEXT, interval: float = 10.0) -> None:
        self.signal = signal
        self.reason = reason
        self.interval = interval
        self._pending = 0
        self._last: float | None = None

    def dropped(self, count: int = 1, exc_info: bool = False) -> None:
        self._pending += count
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return
        pending, self._pending = self._pending, 0
        first = self._last is None
        self._last = now
        log.warning(
            "gunicorn-otel: dropped %d %s item(s)%s: %s",
            pending,
            self.signal,
            "" if first else f" in the last {self.interval:.0f}s",
            self.reason,
            exc_info=exc_info and first,
        )
