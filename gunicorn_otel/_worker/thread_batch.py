"""Batching for native-thread and asyncio workers: one mechanism for spans and log records.

Why not the SDK's ``BatchSpanProcessor``?  Under sustained load in a 2-core
worker its export thread falls behind and the bounded deque evicts spans
(issue #13: gthread lost 1,153 of 25,719 request spans in one 8 s round).
The export thread is not short of CPU but of the GIL: every socket call of an
export releases it, and getting it back waits behind request threads (or the
event loop) that hold it until the interpreter's switch interval forces a
hand-off.  Meanwhile the queue holds thousands of span objects, a dozen
GC-tracked objects each, which keeps the cyclic GC running
(``bench/queue_gc_bench.py``).

Here:

* ``emit`` appends ``prepare(item)`` to a deque: for spans exported over
  OTLP/HTTP the encoded span (``otlp_wire.encode_span``, byte-identical to
  the official encoder, ``tests/test_otlp_wire.py``), so the span object dies
  when it ends and the encoding is paid by the producer, which has the GIL
  anyway.  ``prepare`` runs only for an item the queue accepts; one that
  raises costs that item (``export_failed``), never the request.
* One export thread per signal, started when the batcher is built (in the
  worker, after fork; a batcher inherited by a forked child ignores what it
  is given there), drains full batches as soon as they exist and the rest
  when the schedule delay passes.
* **Send-ahead (spans over plain OTLP/HTTP).**  With a ``send_ahead``
  (``_worker/send_ahead.SendAhead``), the producer that fills a batch posts it
  itself without waiting for the answer, and reads the answer when it fills
  the next one; the export thread then only handles what may block (answers
  nobody read, failures, retries, partial batches, flush, shutdown) and stays
  asleep under load instead of waking for the GIL on every system call the
  request threads make.
* **Back-pressure while healthy.**  A producer that finds the queue past its
  high-water mark (half of ``max_queue_size``) while exports are healthy
  (``export_health``) waits on a condition, releasing the GIL, until the
  export thread has taken a batch.  That is the hand-off the export thread
  was starved of; with a collector that answers, nothing is dropped.  Such a
  wait ends within a batch hand-off against a collector that answers, so it
  is capped at ``max_wait`` (50 ms).
  A wait that reaches the cap while the export thread used no CPU meanwhile
  means that thread is blocked on the network (a collector that just became
  a black hole, or a slow one): nobody waits again until an export succeeds
  within ``slow_after`` (0.25 s).  If it did use CPU, it is merely short of
  it on a busy machine, and waiting stays on.  While exports fail or are
  slow, nobody waits: the queue fills and the newest items are dropped and
  counted (``queue_full``), and the log says so (``drop_notice``).
* Memory stays bounded: ``max_queue_size`` queued items plus the one batch in
  flight, plus, with send-ahead, ``SendAhead.max_in_flight`` batches sent and
  unanswered (with their request bytes) and the batches they hand over.
* ``force_flush`` and ``shutdown`` honour their timeouts from any thread;
  items still queued or in an abandoned export at the shutdown deadline are
  counted as ``shutdown_deadline``.

For asyncio workers the producer is the event loop itself, so a wait stalls
every connection of that worker for its duration; it is the same trade as for
threads (a short stall instead of a lost span), bounded as above, and
off while exports are unhealthy.  ``bench/saturation.py`` measures its p99.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from gunicorn_otel._master import forksafe
from gunicorn_otel._master.deadline import Deadline
from gunicorn_otel._worker.admission import REFUSED, Admitting
from gunicorn_otel._worker.export_health import ExportHealth
from gunicorn_otel._worker.stats import SHUTDOWN_DEADLINE

log = logging.getLogger(__name__)


def _succeeded(result) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class _Batch(list):
    """Items taken from the queue together; ``first`` is the take order of the first (1-based)."""

    __slots__ = ("first",)
    first: int


class ThreadBatcher(Admitting):
    """Queue and export thread for one signal."""

    def __init__(
        self,
        exporter,
        *,
        signal: str,
        stats,
        schedule_delay: float,
        max_export_batch_size: int,
        max_queue_size: int,
        prepare=None,
        slow_after: float = 0.25,
        max_wait: float = 0.05,
        send_ahead=None,
    ) -> None:
        self._init_admission(signal, stats, max_queue_size, prepare)
        self.exporter = exporter
        self.schedule_delay = schedule_delay
        self.batch_size = max_export_batch_size
        self.max_wait = max_wait
        self.health = ExportHealth(slow_after)
        self._high_water = max(max_export_batch_size, max_queue_size // 2)
        self._queue: collections.deque = collections.deque()
        self.send_ahead = send_ahead  # a SendAhead: full batches sent by the producer (module docstring)
        self._handed: collections.deque = collections.deque()  # batches the sender left to the export thread
        self._wake = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0
        # Batches taken and not yet resolved, by the take order of their first item
        # (producers take batches too, with send-ahead): force_flush waits on these.
        self._take_lock = threading.Lock()
        self._taken = 0
        self._outstanding: dict[int, int] = {}
        self._flush_requested = False
        self._thread: threading.Thread | None = None
        self._clock: int | None = None  # the export thread's CPU-time clock
        self._start_lock = threading.Lock()
        self._start_thread()

    # -- hot path ----------------------------------------------------------

    def emit(self, item) -> None:
        """Take one item; waits only as described in the module docstring."""
        queue = self._queue
        item = self._admit(item, len(queue))
        if item is REFUSED:
            return
        queue.append(item)
        queued = len(queue)
        if queued >= self.batch_size:
            # The sender gets one try per batch's worth of items: where it can't
            # send (no connection ready, answers outstanding), the export thread
            # takes the batch and producers don't try again on every item.
            ahead = self.send_ahead
            if ahead is not None and queued % self.batch_size == 0 and ahead.pump(self):
                queued = len(queue)
            elif not self._wake.is_set():
                self._wake.set()
        if queued >= self._high_water and self.health.healthy():
            self._wait_for_room()

    def hand_over(self, batch: list) -> None:
        """A batch the sender took and leaves to the export thread (its SDK exporter sends it, with retries)."""
        self._handed.append(batch)
        self._wake.set()

    def _wait_for_room(self) -> None:
        # Re-check health every 10 ms: an export in flight for ``slow_after``
        # ends the wait.  A wait that reaches ``max_wait`` asks whether the
        # export thread used any CPU meanwhile: if not, it is blocked on the
        # network (a collector that just became a black hole, or answers
        # slowly), and nobody waits again until an export succeeds promptly;
        # if it did, it is only short of CPU on a busy machine, and the next
        # producer past the mark may wait again.
        deadline = time.monotonic() + self.max_wait
        cpu = self._export_cpu()
        with self._cond:
            self._waiting += 1
            try:
                while len(self._queue) >= self._high_water and self.health.healthy():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if cpu is None or self._export_cpu() == cpu:
                            self.health.wait_timed_out()
                        return
                    self._cond.wait(min(remaining, 0.01))
            finally:
                self._waiting -= 1

    def _export_cpu(self) -> float | None:
        """CPU seconds the export thread has used (None where the platform can't tell)."""
        clock = self._clock
        if clock is None:
            return None
        try:
            return time.clock_gettime(clock)
        except OSError:
            return None

    def _start_thread(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._shutdown:
                thread = threading.Thread(target=self._run, name=f"gunicorn-otel-export-{self.signal}", daemon=True)
                thread.start()
                self._thread = thread
                getclock = getattr(time, "pthread_getcpuclockid", None)
                if getclock is not None and thread.ident is not None:
                    try:
                        self._clock = getclock(thread.ident)
                    except OSError:
                        self._clock = None

    # -- export thread -------------------------------------------------------

    def _take(self) -> list:
        popleft = self._queue.popleft
        with self._take_lock:
            # Items leave the queue only under this lock (here and in ``shutdown``);
            # producers only append: every item counted is there.
            batch = _Batch([popleft() for _ in range(min(self.batch_size, len(self._queue)))])
            batch.first = self._taken + 1
            self._taken += len(batch)
            if batch:
                self._outstanding[batch.first] = len(batch)
        if self._waiting:
            with self._cond:
                self._cond.notify_all()
        return batch

    def _export(self, batch: list) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        started = self.health.begin()
        ok = False
        try:
            ok = _succeeded(self.exporter.export(batch))  # CountingExporter records the outcome
        except Exception:  # keep the export thread alive
            log.exception("gunicorn-otel: exporting %s failed", self.signal)
        finally:
            self.health.end(started, ok)
            detach(token)
            self.resolved(batch)

    def resolved(self, batch: list) -> None:
        """Every item of ``batch`` (from ``_take``) is counted: exported, or dropped by a reason."""
        with self._take_lock:
            self._outstanding.pop(getattr(batch, "first", 0), None)
        if self._waiting or self._flush_requested:
            with self._cond:
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self.schedule_delay)
            self._wake.clear()
            everything = not woken or self._flush_requested or self._shutdown
            self._settle()
            while self._queue and (everything or len(self._queue) >= self.batch_size):
                self._export(self._take())
                everything = everything or self._flush_requested or self._shutdown
            self._settle(open_connections=not self._shutdown)
            ahead = self.send_ahead
            if self._shutdown and not self._queue and not self._handed and not (ahead and ahead.pending):
                return

    def _settle(self, open_connections: bool = False) -> None:
        """What the sender left: answers nobody read yet, batches handed over; then connections to open."""
        ahead = self.send_ahead
        if ahead is not None:
            try:
                ahead.settle(self)
            except Exception:  # keep the export thread alive; the sends it held are handed over or counted
                log.exception("gunicorn-otel: reading %s answers failed", self.signal)
        while self._handed:
            self._export(self._handed.popleft())
        if ahead is not None and open_connections and self.health.healthy():
            ahead.open_connections()

    # -- flush and shutdown --------------------------------------------------

    def _flushed(self, target: int) -> bool:
        """Whether the first ``target`` items queued have all been taken and resolved."""
        with self._take_lock:
            return self._taken >= target and all(first > target for first in self._outstanding)

    def _wait_done(self, target: int, deadline: float) -> bool:
        with self._cond:
            while not self._flushed(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def force_flush(self, timeout: float) -> bool:
        """Export everything queued now; give up after ``timeout`` seconds."""
        if self._shutdown or self._generation != forksafe.generation:
            return False
        with self._take_lock:  # every item queued so far: taken, or still in the queue
            target = self._taken + len(self._queue)
        if self._flushed(target):
            return True
        self._flush_requested = True
        try:
            self._wake.set()
            return self._wait_done(target, time.monotonic() + timeout)
        finally:
            self._flush_requested = False

    def shutdown(self, deadline: Deadline) -> bool:
        """Flush until ``deadline``, then abandon and count what is left."""
        if self._shutdown or self._generation != forksafe.generation:
            return True
        with self._start_lock:
            self._shutdown = True
            thread = self._thread
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        finished = True
        if thread is not None:
            thread.join(deadline.remaining())
            finished = not thread.is_alive()
        ahead = self.send_ahead
        if ahead is not None:
            ahead.close()  # after it no producer sends; an unanswered send is counted by the runtime
            finished = finished and not ahead.pending and not self._handed
        if not finished:
            # Take what is still queued, under the lock takers hold (briefly:
            # no taker blocks while holding it), so an item the export thread
            # or a send-ahead producer takes meanwhile is theirs.  The
            # batch in flight is left to its export: if it ends before the exit
            # line, ``CountingExporter`` counts it; if not, ``Runtime._abandon``
            # counts it as ``shutdown_deadline`` (it may still arrive).
            left = 0
            with self._take_lock:
                while self._queue:
                    self._queue.popleft()
                    left += 1
            self.stats.dropped(self.signal, SHUTDOWN_DEADLINE, left)
        try:
            self.exporter.shutdown()
        except Exception:
            log.debug("gunicorn-otel: exporter shutdown failed", exc_info=True)
        return finished
