"""Telemetry about the Gunicorn master itself: worker boots, exits, timeouts, reloads, count.

Why not an SDK ``MeterProvider`` in the master?  Everything the SDK builds is
inherited by every worker the master forks: its batch processors and metric
reader start a new thread in each child from an at-fork hook, the providers
re-run resource detection inside ``fork``, counters would carry the master's
values into the workers, and a global provider set here would block the
workers' own (the set-once flag is process memory).  So the master keeps no
SDK object at all:

* hooks run in the arbiter's thread and only count and append, under a lock
  that is never held across I/O: they never wait on the network;
* one daemon thread, started in ``when_ready``, POSTs cumulative counters, a
  worker-count gauge and one log record per event as OTLP/HTTP protobuf
  (built with ``opentelemetry-proto``) with a short timeout;
* an after-fork callback (``forksafe``) drops the whole object, and the
  logging handler (``recording.ArbiterRecords``), in every child, which never touches them.

The package: ``exit_causes`` (why a worker booted or exited, pure functions),
``recording`` (what the hooks record), ``sender`` (the export thread and its
HTTP client), ``bodies`` (the OTLP protobuf bodies); this module holds the
functions the hooks call and the one ``MasterTelemetry`` of this process.
"""

from __future__ import annotations

import logging

from gunicorn_otel._master import forksafe, prometheus, slots
from gunicorn_otel._master.master_telemetry import bodies, sender
from gunicorn_otel._master.master_telemetry.recording import MasterTelemetry

log = logging.getLogger(__name__)

_current: MasterTelemetry | None = None


@forksafe.register
def _drop_in_child() -> None:
    """Runs inside ``fork`` in every child (worker, dirty arbiter, USR2 re-exec)."""
    global _current
    current, _current = _current, None
    if current is not None:
        # logging's own after-fork hook (registered when logging was imported,
        # so before forksafe's) has already reset the module lock taken here.
        logging.getLogger("gunicorn.error").removeHandler(current.arbiter_records)


def _targets(settings) -> dict:
    """Signals the master can send: OTLP over HTTP (it keeps no gRPC channel to fork with)."""
    return {
        signal: options
        for signal in ("metrics", "logs")
        if (options := settings.exporting(signal)).kind == "otlp" and options.protocol != "grpc"
    }


# -- what the hooks call (arbiter's thread) -------------------------------------------


def _mine() -> MasterTelemetry | None:
    current = _current
    return current if current is not None and current.pid == forksafe.pid() else None


def when_ready(server, settings) -> None:
    """Start master telemetry unless telemetry or ``GUNICORN_OTEL_MASTER_TELEMETRY`` is off."""
    global _current
    if settings.disabled or not settings.master_telemetry or _mine() is not None:
        return
    targets = _targets(settings)
    if not targets and prometheus.snapshot_directory() is None:
        if any(settings.exporting(s).protocol == "grpc" for s in ("metrics", "logs")):
            log.info("gunicorn-otel: master telemetry is sent over OTLP/HTTP only; off with gRPC")
        return
    # In the arbiter's thread, before the export thread starts (see sender.prepare);
    # this also keeps protobuf out of a master that has master telemetry off.
    bodies.load()
    sender.prepare(targets)
    _current = MasterTelemetry(settings, server, targets)
    _current.start()


def worker_spawning(server, worker) -> None:
    """``pre_fork``, after the worker got its slot."""
    current = _mine()
    if current is not None:
        current.spawning(slots.of(worker))


def worker_exited(server, worker) -> None:
    """``child_exit``."""
    current = _mine()
    if current is not None:
        current.exited(worker.pid, slots.of(worker), bool(getattr(worker, "aborted", False)))


def reloading(server) -> None:
    """``on_reload``: runs before the new workers are spawned and the old ones retired."""
    current = _mine()
    if current is not None:
        current.reloading()


def on_exit(timeout: float) -> None:
    """``on_exit``: one last export, waited for at most ``timeout`` seconds."""
    current = _mine()
    if current is not None:
        current.stop(timeout)
