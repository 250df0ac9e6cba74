"""Are exports keeping up?  The one gate for back-pressure, in every pipeline.

A request may wait for the export path only while the collector answers
promptly (issue #13: back-pressure must be off whenever exports are failing
or slow).  "Healthy" here means all of:

* the last export that finished succeeded, and took less than ``slow_after``;
* no export in flight has been running for ``slow_after`` or longer;
* no producer's wait has reached its cap since the last prompt success
  (``stalled``): the export path made no progress for that long.

A producer's wait re-checks health as it goes, so it also ends once an export
has been in flight for ``slow_after``.  Its cap is the pipeline's (short for
threads and asyncio, where a wait holds a request or the whole event loop): a
collector turning into a black hole stalls the requests then in flight once,
for at most that cap, and never again until an export succeeds promptly.

Plain attribute reads and writes, no lock: every field is written by whole
assignment, and a stale read only moves one wait a little earlier or later.
The same object serves native threads and greenlets.
"""

from __future__ import annotations

import itertools
import time


class ExportHealth:
    def __init__(self, slow_after: float) -> None:
        self.slow_after = slow_after
        self.failing = False
        self.stalled = False
        self._in_flight: dict[int, float] = {}
        self._tokens = itertools.count(1)  # next() is atomic: exports start in several threads

    def begin(self) -> int:
        """Record an export starting; returns the token ``end`` takes."""
        token = next(self._tokens)
        self._in_flight[token] = time.monotonic()
        return token

    def end(self, token: int, ok: bool) -> None:
        started = self._in_flight.pop(token, None)
        self.outcome(ok, prompt=started is not None and time.monotonic() - started < self.slow_after)

    def outcome(self, ok: bool, prompt: bool) -> None:
        """An export ended: ``ok``, and ``prompt`` if its answer came within ``slow_after``."""
        self.failing = not (ok and prompt)
        if ok and prompt:
            self.stalled = False

    def healthy(self) -> bool:
        if self.failing or self.stalled:
            return False
        in_flight = self._in_flight
        if in_flight:
            oldest = min(in_flight.values())
            if time.monotonic() - oldest >= self.slow_after:
                return False
        return True

    def wait_timed_out(self) -> None:
        """A producer waited its whole bound without progress: stop waiting until a prompt success."""
        self.stalled = True
