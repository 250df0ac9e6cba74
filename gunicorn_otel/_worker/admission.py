"""Whether a batcher takes an item: the one rule both batchers apply before queueing.

``thread_batch.ThreadBatcher`` and ``gevent_batch.GreenletBatcher`` differ in
how they wake their exporter and apply back-pressure, not in what they accept.
An item is refused, and counted by reason, when:

* the batcher was inherited across a fork (``forksafe.generation`` moved on):
  the parent owns these items and its export thread, so nothing is counted here;
* the batcher is shut down (``shutdown_deadline``);
* the queue is full (``queue_full``, said in the log by ``drop_notice``);
* ``prepare`` (the span encoder, or the log record's detached copy) raises
  (``export_failed``): one bad item costs that item, never the request.

``prepare`` runs only for an item the queue accepts.  Nothing here imports
gevent or threading, so both models can share it.
"""

from __future__ import annotations

from gunicorn_otel._master import forksafe
from gunicorn_otel._worker.drop_notice import UNENCODABLE_TEXT, DropNotice
from gunicorn_otel._worker.stats import EXPORT_FAILED, QUEUE_FULL, SHUTDOWN_DEADLINE, ExportStats

REFUSED = object()  # what ``_admit`` returns for an item not to queue


class Admitting:
    """Mixin for a batcher: call ``_init_admission`` in ``__init__``, ``_admit`` in ``emit``."""

    signal: str
    stats: ExportStats
    max_queue_size: int

    def _init_admission(self, signal: str, stats: ExportStats, max_queue_size: int, prepare) -> None:
        self.signal = signal
        self.stats = stats
        self.max_queue_size = max_queue_size
        self._prepare = prepare
        self._count_accepted = stats.acceptor(signal)
        # Comparing a generation is cheaper per item than ``os.getpid()``, a system call.
        self._generation = forksafe.generation
        self._shutdown = False
        self._notice = DropNotice(signal)
        self._unencodable = DropNotice(signal, UNENCODABLE_TEXT)

    def _admit(self, item, queued: int):
        """``item`` prepared for a queue holding ``queued`` items, or ``REFUSED`` (counted)."""
        if self._generation != forksafe.generation:
            return REFUSED
        self._count_accepted()
        if self._shutdown:
            self.stats.dropped(self.signal, SHUTDOWN_DEADLINE, 1)
            return REFUSED
        if queued >= self.max_queue_size:
            self.stats.dropped(self.signal, QUEUE_FULL, 1)
            self._notice.dropped()
            return REFUSED
        if self._prepare is None:
            return item
        try:
            return self._prepare(item)
        except Exception:  # noqa: BLE001 - one bad item must cost that item, never the request (logged by the notice)
            self.stats.dropped(self.signal, EXPORT_FAILED, 1)
            self._unencodable.dropped(exc_info=True)
            return REFUSED
