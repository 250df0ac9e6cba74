"""Batching for gevent workers: greenlets only, one mechanism for spans and log records.

Why not the SDK's ``BatchProcessor`` built after ``monkey.patch_all()``?  It is
clean then (its thread becomes a greenlet), but it exports one batch at a time
from one greenlet.  Under sustained load in a 2-core gevent worker it loses
most spans (the "stock BSP in post_worker_init" row of ``bench/gevent_bench.py``
in docs/gevent.md): while its single export waited on the network, request
greenlets overflowed the queue.

Here:

* ``emit`` appends to a deque and may set a ``gevent.event.Event``; it never
  blocks, so ``on_end`` never stalls a request or the hub.
* What is queued is ``prepare(item)``: for spans exported over OTLP/HTTP the
  encoded span (``otlp_wire.encode_span``), so the span object dies when it
  ends.  Thousands of queued spans, each a dozen GC-tracked objects, kept the
  cyclic GC running (``bench/queue_gc_bench.py``); that cost more than the
  encoding (figures and commands in docs/gevent.md).  ``prepare`` runs only for an item the queue accepts; one
  that raises costs that item (``export_failed``), never the request.
* A dispatcher greenlet wakes as soon as a full batch is queued (or the
  schedule delay passes) and hands batches to a ``gevent.pool.Pool`` of up to
  16 exports in flight.  Under load an export waits several hub iterations for
  its response (every ready request greenlet runs first), so throughput is
  slots x batch / latency; 16 slots kept up where 2, 4 and 8 did not
  (``bench/gevent_bench.py``, docs/gevent.md).  Memory stays bounded: the queue
  plus 16 batches.
* When the queue passes half full while a slot is idle, the emitting greenlet
  yields once (``gevent.sleep(0)``): otherwise request greenlets that never
  wait on I/O starve the dispatcher until the queue overflows.  When every
  slot is busy but exports are healthy (``_worker/export_health``), it waits
  for a slot to free, until an export has been in flight for ``slow_after``
  (1 s), and at most twice that: at 100 connections the 16 exports in flight
  each wait several hub iterations for their response, and without this wait
  one round dropped 11,392 of 58,504 spans (issue #13) with nothing in the
  log.  While exports fail or are slow nobody waits; drops are counted and
  said in the log, at most once per 10 s (``_worker/drop_notice``).
* ``force_flush`` and ``shutdown`` honour their timeouts with
  ``gevent.Timeout`` and pool joins, cooperatively: they are safe from a
  request greenlet and never hold a lock across I/O.
* Loss is counted exactly by reason (see ``stats``): a full queue drops the
  *new* item; items still queued or in an abandoned export at the shutdown
  deadline are counted as ``shutdown_deadline``.

Imported only after patching (``worker_kinds``: gevent builds in
``post_worker_init``); greenlets start lazily, in the process that built us.
"""

from __future__ import annotations

import collections
import logging
import time

import gevent
import gevent.event
import gevent.pool
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from gunicorn_otel._master import forksafe
from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.admission import REFUSED, Admitting
from gunicorn_otel._worker.batch_processors import (
    BatcherLogRecordProcessor,
    BatcherSpanProcessor,
    detached_log_record,
)
from gunicorn_otel._worker.export_health import ExportHealth
from gunicorn_otel._worker.stats import SHUTDOWN_DEADLINE

log = logging.getLogger(__name__)


class GreenletBatcher(Admitting):
    """Queue, dispatcher greenlet and export pool for one signal."""

    def __init__(
        self,
        exporter,
        *,
        signal: str,
        stats,
        schedule_delay: float,
        max_export_batch_size: int,
        max_queue_size: int,
        max_concurrent_exports: int = 16,
        prepare=None,
        slow_after: float = 1.0,
    ) -> None:
        self._init_admission(signal, stats, max_queue_size, prepare)
        self.exporter = exporter
        self.schedule_delay = schedule_delay
        self.batch_size = max_export_batch_size
        self._queue: collections.deque = collections.deque()
        self._wake = gevent.event.Event()
        self._pool = gevent.pool.Pool(max_concurrent_exports)
        self._in_flight = 0
        self._dispatcher = None
        self._pressure = max(max_export_batch_size, max_queue_size // 2)
        self._hub = gevent.get_hub()
        self.max_wait = 2 * slow_after
        self.health = ExportHealth(slow_after)
        self._slot_freed = gevent.event.Event()

    # -- hot path ----------------------------------------------------------

    def emit(self, item) -> None:
        """Take one item; never blocks (it yields once only under the pressure described above)."""
        queue = self._queue
        queued = len(queue)
        item = self._admit(item, queued)
        if item is REFUSED:
            return
        queue.append(item)
        queued += 1
        if self._dispatcher is None:
            self._dispatcher = gevent.spawn(self._dispatch)
        if queued >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        if queued >= self._pressure and gevent.getcurrent() is not self._hub:
            if self._pool.free_count():
                # Under sustained load a request greenlet can serve request
                # after request without waiting on I/O, and the dispatcher
                # never runs until the queue overflows.  Yield once so it can
                # hand the queued batches to the idle export slots.
                gevent.sleep(0)
            elif self.health.healthy():
                # Every slot busy, but the collector answers: wait for one.
                # When exports fail or are slow, waiting can't help: drop
                # instead of slowing the app.
                self._wait_for_slot()

    def _wait_for_slot(self) -> None:
        # As in ``_worker/thread_batch``: re-check health every 50 ms, so an
        # export hanging for ``slow_after`` ends the wait; the cap is 2x that.
        self._slot_freed.clear()
        deadline = time.monotonic() + self.max_wait
        while not self._slot_freed.wait(0.05):
            if not self.health.healthy():
                return
            if time.monotonic() >= deadline:
                self.health.wait_timed_out()
                return

    # -- export --------------------------------------------------------------

    def _take(self) -> list:
        queue = self._queue
        count = min(self.batch_size, len(queue))
        return [queue.popleft() for _ in range(count)]

    def _export(self, batch: list) -> None:
        self._in_flight += len(batch)
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        started = self.health.begin()
        ok = False
        try:
            result = self.exporter.export(batch)  # CountingExporter records the outcome
            ok = getattr(result, "name", None) == "SUCCESS"
        except Exception:  # keep the dispatcher alive
            log.exception("gunicorn-otel: exporting %s failed", self.signal)
        finally:
            self.health.end(started, ok)
            detach(token)
            self._in_flight -= len(batch)
            self._slot_freed.set()

    def _submit_ready(self, everything: bool) -> None:
        """Hand batches to the pool: full ones, or everything queued."""
        while self._queue and (everything or len(self._queue) >= self.batch_size):
            # Wait (cooperatively) for a free export slot *before* taking a
            # batch, so a timeout here can never strand popped items: the
            # dispatcher slows down, emitters never do.
            self._pool.wait_available()
            if not self._queue:
                return
            self._pool.spawn(self._export, self._take())

    def _dispatch(self) -> None:
        while not self._shutdown:
            woken = self._wake.wait(self.schedule_delay)
            self._wake.clear()
            if self._shutdown:
                return
            # Timer expiry exports whatever is queued; an early wake only full batches.
            self._submit_ready(everything=not woken)

    # -- flush and shutdown --------------------------------------------------

    def force_flush(self, timeout: float) -> bool:
        """Export everything queued now; give up after ``timeout`` seconds."""
        if self._shutdown or self._generation != forksafe.generation:
            return False
        with gevent.Timeout(timeout, False):
            self._submit_ready(everything=True)
            return self._pool.join(timeout=timeout)
        return False

    def shutdown(self, deadline: Deadline) -> bool:
        """Flush until ``deadline``, then abandon and count what is left."""
        if self._shutdown or self._generation != forksafe.generation:
            return True
        self._shutdown = True
        timeout = deadline.remaining()
        self._wake.set()
        finished = False
        with gevent.Timeout(timeout, False):
            self._submit_ready(everything=True)
            finished = self._pool.join(timeout=timeout)
        if not finished:
            left = len(self._queue)
            self._queue.clear()
            # Killing an export interrupts its socket wait; its items were
            # never counted as exported or failed, so count them here.
            abandoned = self._in_flight
            self._pool.kill(block=True, timeout=0.1)
            self.stats.dropped(self.signal, SHUTDOWN_DEADLINE, left + abandoned)
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)
        try:
            self.exporter.shutdown()
        except Exception:
            log.debug("gunicorn-otel: exporter shutdown failed", exc_info=True)
        return finished


# The processors over this batcher are the shared ones (``_worker/batch_processors``).
GreenletSpanProcessor = BatcherSpanProcessor
GreenletLogRecordProcessor = BatcherLogRecordProcessor
__all__ = ["GreenletBatcher", "GreenletLogRecordProcessor", "GreenletSpanProcessor", "detached_log_record"]
