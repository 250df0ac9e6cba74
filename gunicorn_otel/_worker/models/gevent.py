"""The gevent model: greenlet batchers and metric reader, and gevent's set-up.

Everything gevent-specific happens here or in the modules this one imports
when it builds (``gevent_batch``, ``gevent_metric_reader``):

* Build after ``monkey.patch_all()``: ``worker_kinds`` builds gevent workers in
  ``post_worker_init``; ``post_fork`` runs before ``patch_all``
  (``gunicorn/workers/ggevent.py`` patches in ``init_process``).  So this
  module imports neither gevent nor the SDK at import time: ``prepare`` runs
  in ``post_fork``.  Only the ``TracerProvider`` is set there, without its
  pipeline or resource detectors (``runtime.claim_tracing``): it starts no
  thread and imports no exporter, and the app's import-time tracers are then
  the SDK's own rather than proxies.
* gRPC must be told about gevent after the standard library is patched and
  before any gRPC object exists (``grpc/experimental/gevent.py``), or a
  black-hole collector freezes the hub for the whole export timeout.
  ``post_fork`` is too early, so ``prepare`` subscribes to gevent's own
  "patched" event, which fires inside ``patch_all`` before the app is
  imported.  ``gevent.events`` is already loaded in the master by ``-k
  gevent`` and pulls in neither ``ssl`` nor ``grpc``.  ``setup`` calls it again
  at build time in case the event never fired.
"""

from __future__ import annotations

import logging

from gunicorn_otel._worker.models import Model
from gunicorn_otel.settings import BatchOptions, MetricOptions, Settings

log = logging.getLogger(__name__)


def uses_grpc(settings: Settings) -> bool:
    return any(settings.exporting(s).protocol == "grpc" for s in settings.enabled_signals())


class GeventModel(Model):
    name = "gevent"
    processor = "gevent"

    def __init__(self) -> None:
        self._grpc_ready = False

    def prepare(self, settings: Settings) -> None:
        if not uses_grpc(settings):
            return
        from gevent import events

        def on_patched(event) -> None:
            if isinstance(event, events.GeventDidPatchAllEvent):
                self.init_grpc()

        events.subscribers.append(on_patched)

    def setup(self, settings: Settings) -> None:
        if uses_grpc(settings):
            self.init_grpc()

    def init_grpc(self) -> None:
        """Idempotent: from the patched event, and again at build time."""
        if self._grpc_ready:
            return
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()
        self._grpc_ready = True

    def _batcher(self, exporter, stats, signal: str, options: BatchOptions, prepare):
        from gunicorn_otel._worker.gevent_batch import GreenletBatcher

        return GreenletBatcher(
            exporter,
            signal=signal,
            stats=stats,
            schedule_delay=options.schedule_delay,
            max_export_batch_size=options.max_export_batch_size,
            max_queue_size=options.max_queue_size,
            prepare=prepare,
        )

    def span_processor(self, exporter, stats, options: BatchOptions):
        from gunicorn_otel._worker.gevent_batch import GreenletSpanProcessor
        from gunicorn_otel._worker.stats import TRACES

        return GreenletSpanProcessor(
            self._batcher(exporter, stats, TRACES, options, getattr(exporter, "prepare_span", None))
        )

    def log_processor(self, exporter, stats, options: BatchOptions):
        from gunicorn_otel._worker.gevent_batch import GreenletLogRecordProcessor, detached_log_record
        from gunicorn_otel._worker.stats import LOGS

        return GreenletLogRecordProcessor(self._batcher(exporter, stats, LOGS, options, detached_log_record))

    def prometheus_reader(self, files, interval: float):
        from gunicorn_otel._worker.prometheus_reader import SnapshotReader

        return SnapshotReader(files, interval, greenlets=True)  # a greenlet ticker, gevent's event and lock

    def metric_reader(self, exporter, options: MetricOptions):
        from gunicorn_otel._worker.gevent_metric_reader import GreenletMetricReader

        return GreenletMetricReader(
            exporter, export_interval_millis=options.interval * 1000, export_timeout_millis=options.timeout * 1000
        )


MODEL = GeventModel()
