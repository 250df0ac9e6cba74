"""A periodic metric reader for gevent workers: a greenlet ticker, cooperative timeouts.

The SDK's ``PeriodicExportingMetricReader`` owns a thread, an ``_export_lock``
and an at-fork hook that starts a new thread in every child.  Built after
patching its thread is a greenlet, but ``force_flush(timeout)`` and
``shutdown(timeout)`` still wait on that lock with no bound while an export
hangs.  Here the ticker is a greenlet started on first collection
registration, and every wait is a ``gevent.Timeout``.
"""

from __future__ import annotations

import logging

import gevent
import gevent.event
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.metrics.export import MetricReader

from gunicorn_otel._master import forksafe

log = logging.getLogger(__name__)


class GreenletMetricReader(MetricReader):
    def __init__(self, exporter, *, export_interval_millis: float, export_timeout_millis: float) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self._exporter = exporter
        self._interval = export_interval_millis / 1000.0
        self._timeout_millis = export_timeout_millis
        self._stopped = gevent.event.Event()
        self._ticker = None
        self._generation = forksafe.generation
        self._is_shutdown = False

    # The SDK marks it @final, but it is the one call that tells a reader it is
    # registered (by the MeterProvider), so the ticker starts there.
    def _set_collect_callback(self, func) -> None:  # type: ignore[misc]
        super()._set_collect_callback(func)
        if self._ticker is None and self._generation == forksafe.generation:
            self._ticker = gevent.spawn(self._tick)

    def _tick(self) -> None:
        while not self._stopped.wait(self._interval):
            self._collect_quietly(self._timeout_millis)

    def _collect_quietly(self, timeout_millis: float) -> None:
        try:
            self.collect(timeout_millis=timeout_millis)
        except Exception:  # a failed collection must not end the ticker
            log.exception("gunicorn-otel: metric collection failed")

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            self._exporter.export(metrics_data, timeout_millis=timeout_millis)
        except Exception:
            log.exception("gunicorn-otel: exporting metrics failed")
        finally:
            detach(token)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        with gevent.Timeout(timeout_millis / 1000.0, False):
            self._collect_quietly(timeout_millis)
            return True
        return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        if self._is_shutdown:
            return
        self._is_shutdown = True
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.kill(block=False)
        finished = False
        with gevent.Timeout(timeout_millis / 1000.0, False):
            self._collect_quietly(timeout_millis)  # one last collection
            finished = True
        if not finished:
            log.info("gunicorn-otel: final metric export abandoned at the shutdown deadline")
        self._exporter.shutdown(timeout_millis=0)
