"""The worker's side of the Prometheus endpoint: a metric reader that writes snapshots.

opentelemetry-exporter-prometheus's ``PrometheusMetricReader`` does the
OTel-to-Prometheus translation (``_total``, unit suffixes, ``target_info``,
scope labels, up-down counters as gauges) when its prometheus_client
registry is collected.  We give it a registry of its own (never the global
one) and collect that registry every ``GUNICORN_OTEL_PROMETHEUS_INTERVAL``,
at ``force_flush`` (a worker timeout) and at shutdown, writing the result as
this worker's snapshot (``_prometheus.snapshot``).  All instruments are
cumulative, so the latest snapshot is the worker's whole history.

The worker's concurrency model builds it (``models.Model.prometheus_reader``):
the ticker is a daemon thread for thread-based workers and a greenlet under
gevent (built after ``monkey.patch_all()``, like every gevent pipeline): no
native thread in a gevent worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

from gunicorn_otel._master import forksafe
from gunicorn_otel._prometheus.snapshot import WorkerFiles

log = logging.getLogger(__name__)


def _families(metrics) -> list:
    return [
        [m.name, m.type, m.documentation, m.unit, [[s.name, s.labels, s.value] for s in m.samples]] for m in metrics
    ]


class SnapshotReader(PrometheusMetricReader):
    """``PrometheusMetricReader`` on a private registry; each collection becomes a snapshot file."""

    def __init__(self, files: WorkerFiles, interval: float, *, greenlets: bool = False) -> None:
        self._files = files
        self._interval = interval
        self._greenlets = greenlets
        self._pid = forksafe.pid()
        self._puller: int | None = None  # ident of the thread/greenlet now pulling the registry
        self._ticker: Any = None
        self._is_shutdown = False
        self._failing = False
        self._stop: Any
        self._snapshot_lock: Any
        if greenlets:
            import gevent.event
            import gevent.lock

            self._stop = gevent.event.Event()
            self._snapshot_lock = gevent.lock.RLock()
        else:
            self._stop = threading.Event()
            self._snapshot_lock = threading.RLock()
        super().__init__(registry=CollectorRegistry(auto_describe=False))

    # The registry's collector calls back into ``collect`` (the SDK pull); other
    # callers of ``collect`` would queue a second copy for the next pull.
    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        if self._puller == threading.get_ident():
            super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    # The SDK marks this final for type checkers; it runs once, when the MeterProvider
    # registers the reader, the first moment a collection can succeed.
    def _set_collect_callback(self, func) -> None:  # type: ignore[misc]
        super()._set_collect_callback(func)
        if self._ticker is None and forksafe.pid() == self._pid:
            if self._greenlets:
                import gevent

                self._ticker = gevent.spawn(self._tick)
            else:
                self._ticker = threading.Thread(target=self._tick, name="gunicorn-otel-prometheus", daemon=True)
                self._ticker.start()

    def _tick(self) -> None:
        # The first snapshot at once: a new worker shows up (gauges, slot) before the first interval.
        self.snapshot()
        while not self._stop.wait(self._interval):
            self.snapshot()

    def snapshot(self) -> bool:
        """Collect now and replace this worker's snapshot file."""
        with self._snapshot_lock:
            if forksafe.pid() != self._pid:
                return False
            self._puller = threading.get_ident()
            try:
                families = _families(self._registry.collect())
                self._files.write(families)
            except Exception as exc:  # noqa: BLE001 - a full disk costs freshness, never a request
                if not self._failing:
                    log.warning(
                        "gunicorn-otel: writing the Prometheus snapshot failed: %s "
                        "(further failures are logged at debug level)",
                        exc,
                    )
                else:
                    log.debug("gunicorn-otel: writing the Prometheus snapshot failed: %s", exc)
                self._failing = True
                return False
            finally:
                self._puller = None
            if self._failing:
                log.warning("gunicorn-otel: writing the Prometheus snapshot works again")
                self._failing = False
            return True

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.snapshot()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        """Write the final snapshot, then release the lock: the endpoint folds it into its baseline."""
        if self._is_shutdown:
            return
        self._is_shutdown = True
        self._stop.set()
        if self._greenlets and self._ticker is not None:
            self._ticker.kill(block=False)
        self.snapshot()
        self._files.close()
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


def build(directory: str, *, instance_id: str, slot, interval: float, greenlets: bool) -> SnapshotReader:
    """A reader outside a Runtime (bench/prometheus_bench.py); workers get theirs from their model."""
    return SnapshotReader(WorkerFiles(directory, instance_id, forksafe.pid(), slot), interval, greenlets=greenlets)
