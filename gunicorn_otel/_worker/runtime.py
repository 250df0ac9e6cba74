"""The per-process owner of the tracer, meter and logger providers.

Exactly one ``Runtime`` serves a process.  The Gunicorn hooks and the FastAPI
lifespan are thin adapters that call ``start``, ``force_flush`` and
``shutdown``; everything with state lives here.

Facts this relies on:

* The SDK's ``set_*_provider`` is set-once per process, and the flag is inherited
  across ``fork``.  So we never build in the Gunicorn master: a provider set
  there would win in every worker.
* Providers are built with ``shutdown_on_exit=False``: the SDK's own atexit
  shutdown is unbounded (30 s per batch processor) and, inherited by a forked
  child, would flush the parent's objects.  We shut down explicitly, bounded.
* A runtime belongs to the process that built it (``forksafe``).  One found in
  a forked child (``--preload`` apps that started one, a test that forks)
  belongs to the parent: the child drops it without flushing, since its queues
  hold the parent's telemetry.

Public for ``fastapi_otel``: ``current()``, ``get_or_create()``, ``hosted()``,
and a ``Runtime``'s ``started``, ``settings``, ``stats``, ``force_flush`` and
``shutdown``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from gunicorn_otel._master import forksafe
from gunicorn_otel._master.deadline import Deadline, run_all
from gunicorn_otel._master.worker_kinds import THREADS
from gunicorn_otel._worker.export_log_limiter import ExportLogLimiter
from gunicorn_otel._worker.stats import LOGS, METRICS, SHUTDOWN_DEADLINE, TRACES, ExportStats
from gunicorn_otel.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from gunicorn_otel._worker.inflight import InflightSpans
    from gunicorn_otel._worker.log_bridge import LogBridge

__all__ = ["Deadline", "Runtime", "current", "get_or_create", "hosted"]

log = logging.getLogger(__name__)

_current: Runtime | None = None
# (provider, active span processor) set by ``claim_tracing``, until ``Runtime.start`` takes it.
_claimed: tuple[Any, Any] | None = None


@forksafe.register
def _drop_in_child() -> None:
    """A runtime or claimed provider inherited across fork is the parent's: forget it, never flush it."""
    global _current, _claimed
    _current = None
    _claimed = None


def current() -> Runtime | None:
    """The runtime of this process, if one was started here (not inherited)."""
    return _current


def hosted() -> bool:
    """True when gunicorn-otel's Gunicorn hooks run this process (``gunicorn_otel.conf`` was loaded).

    The worker then owns the runtime's start and its bounded exit; a framework
    integration (``fastapi_otel``) only flushes.
    """
    from gunicorn_otel._master import hooks

    return hooks.loaded_settings() is not None


def get_or_create(settings: Settings, **kwargs) -> Runtime:
    """This process's runtime, creating it on first use; an inherited one is discarded."""
    global _current
    runtime = current()
    if runtime is None:
        _current = runtime = Runtime(settings, **kwargs)
    return runtime


class Runtime:
    """Owns one process's providers, pipelines, loss counts and exit deadline."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: str = THREADS,
        resource_attributes: dict | None = None,
    ) -> None:
        from gunicorn_otel._worker import models

        self.settings = settings
        self.pid = forksafe.pid()
        self._generation = forksafe.generation
        self.model = models.get(model)
        self.processor = self.model.processor
        self.instance_id = str(uuid.uuid4())
        self.extra_attributes = dict(resource_attributes or {})
        self.stats = ExportStats()
        self.export_log = ExportLogLimiter()
        self.started = False
        self.stopped = False
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        # The model's processors: shutdown(deadline) -> bool (models.Model).
        self._span_processor: Any = None
        self._active_span_processor: Any = None  # ActiveSpanProcessor, once a tracer provider is built
        self.inflight: InflightSpans | None = None
        self._log_processor: Any = None
        self._log_bridge: LogBridge | None = None
        self._exporters: dict[str, Any] = {}
        self.span_encoder = ""  # "C" or "Python" once traces started (``_span_encoder``)

    # -- start -------------------------------------------------------------

    def start(self) -> None:
        """Build the providers and set them as the globals; a second call does nothing."""
        if self.started or self.stopped or not self._here():
            return
        self.started = True
        if self.settings.disabled:
            return
        from gunicorn_otel._worker import exporters
        from gunicorn_otel._worker.counting import CountingExporter, CountingMetricExporter

        resource = self._resource()
        signals = self.settings.enabled_signals()
        for signal in signals:
            inner = exporters.build(signal, self.settings.exporting(signal))
            if signal == METRICS:
                self._exporters[signal] = CountingMetricExporter(inner, self.stats, self.export_log)
            else:
                self._exporters[signal] = CountingExporter(inner, signal, self.stats, self.export_log)
        self.export_log.install()  # after the exporters' modules (and loggers) exist
        if TRACES in signals:
            self._start_traces(resource)
        if METRICS in signals or self.settings.prometheus is not None:
            self._start_metrics(resource)
        if LOGS in signals:
            self._start_logs(resource)
        from gunicorn_otel._worker import ownership

        ownership.adopt(self)
        log.debug("gunicorn-otel: runtime started in pid %s (%s processor)", self.pid, self.processor)

    def _resource(self):
        from opentelemetry.sdk.resources import Resource

        attributes = dict(self.settings.resource_attributes)
        # The same name as the master's (gunicorn_otel._master.identity).
        attributes["service.name"] = self.settings.service_name_resolved()
        attributes.update(self.extra_attributes)
        # Ours win over the SDK's detectors: the SDK's own service.instance.id
        # detector would otherwise pick a value per provider, not per process.
        attributes["service.instance.id"] = self.instance_id
        attributes["process.pid"] = self.pid
        return Resource.create(attributes)

    def _start_traces(self, resource) -> None:
        from opentelemetry import trace

        from gunicorn_otel._worker import otlp_wire
        from gunicorn_otel._worker.active_span_processor import ActiveSpanProcessor
        from gunicorn_otel._worker.inflight import InflightSpans

        otlp_wire.use_native(self.settings.native_encoder)  # before the pipeline takes its encoder
        self._span_processor = self.model.span_processor(self._exporters[TRACES], self.stats, self.settings.bsp)
        self.span_encoder = _span_encoder(self._span_processor, self._exporters[TRACES])
        self.inflight = InflightSpans()
        claimed = _take_claimed(resource)
        if claimed is not None:  # already global (``claim_tracing``): give it its pipeline
            self.tracer_provider, self._active_span_processor = claimed
            self._active_span_processor.attach(self._span_processor, self.inflight)
            return
        self._active_span_processor = ActiveSpanProcessor(self._span_processor, self.inflight)
        provider = _tracer_provider(self.settings, resource, self._active_span_processor)
        self.tracer_provider = provider
        _set_global("TracerProvider", trace.set_tracer_provider, trace.get_tracer_provider, provider)

    def _start_metrics(self, resource) -> None:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider

        s = self.settings
        readers = []
        if METRICS in self._exporters:
            readers.append(self.model.metric_reader(self._exporters[METRICS], s.metric))
        if s.prometheus is not None:
            readers += self._prometheus_reader()
        if not readers:
            return
        provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        self.meter_provider = provider
        _set_global("MeterProvider", metrics.set_meter_provider, metrics.get_meter_provider, provider)
        if s.self_metrics:
            from gunicorn_otel._worker.self_metrics import register

            register(provider, self.stats)

    def _prometheus_reader(self) -> list:
        """The snapshot reader feeding the master's Prometheus endpoint, if this process has a master."""
        from gunicorn_otel._master import prometheus

        directory = prometheus.snapshot_directory()
        if directory is None:
            log.warning(
                "gunicorn-otel: OTEL_METRICS_EXPORTER names prometheus, but no Gunicorn master "
                "started the endpoint (run under gunicorn -c python:gunicorn_otel.conf); not served"
            )
            return []
        from gunicorn_otel._prometheus.snapshot import WorkerFiles

        slot = self.extra_attributes.get("gunicorn.worker.slot")
        files = WorkerFiles(directory, self.instance_id, self.pid, slot)
        return [self.model.prometheus_reader(files, prometheus.snapshot_interval())]

    def _start_logs(self, resource) -> None:
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider

        from gunicorn_otel._worker.log_bridge import LogBridge

        s = self.settings
        provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._log_processor = self.model.log_processor(self._exporters[LOGS], self.stats, s.blrp)
        provider.add_log_record_processor(self._log_processor)
        self.logger_provider = provider
        _set_global("LoggerProvider", _logs.set_logger_provider, _logs.get_logger_provider, provider)
        self._log_bridge = LogBridge(provider, s.log_level)
        self._log_bridge.attach()

    # -- flush and shutdown ------------------------------------------------

    def _providers(self) -> dict:
        return {
            name: provider
            for name, provider in (
                (TRACES, self.tracer_provider),
                (METRICS, self.meter_provider),
                (LOGS, self.logger_provider),
            )
            if provider is not None
        }

    def force_flush(self, deadline: Deadline) -> bool:
        """Export what is queued, giving up at ``deadline``; each provider gets what is left of it."""
        if not self._owns_live_providers():
            return True

        def flush(provider):
            return lambda: provider.force_flush(timeout_millis=deadline.remaining_millis())

        done = run_all({name: flush(p) for name, p in self._providers().items()}, deadline)
        return all(done.values())

    def record_abort(self, deadline: Deadline, *, stuck, stack: str, only_ident: int | None) -> int:
        """Timeout abort: end the open request spans with the error, then flush by ``deadline``.

        Ending runs in a helper (``run_all``) like every SDK call here: the
        signal handler interrupted arbitrary code, which may hold a lock the
        SDK needs; then we stop waiting instead of deadlocking.
        """
        if not self._owns_live_providers():
            return 0
        ended = [0]
        processor = self.inflight
        if processor is not None:
            from gunicorn_otel._worker import inflight

            inflight.quiet_ended_span_warnings()

            def end() -> None:
                ended[0] = inflight.end_inflight(processor, stuck=stuck, stack=stack, only_ident=only_ident)

            run_all({"abort": end}, Deadline(min(deadline.at, time.monotonic() + 0.1)))
        self.force_flush(deadline)
        return ended[0]

    def shutdown(self, deadline: Deadline) -> bool:
        """Flush and stop every provider by ``deadline``; log one summary line.

        All three providers shut down at once so the bound is shared, not
        summed.  A pipeline still exporting at the deadline is abandoned: its
        exporter is shut down (which interrupts the SDK's retry sleep) and
        what it held is counted as dropped at the deadline.
        """
        if not self._owns_live_providers():
            return True
        self.stopped = True
        started = time.monotonic()
        if self._log_bridge is not None:
            self._log_bridge.detach()

        processors = {TRACES: self._span_processor, LOGS: self._log_processor}
        left_behind: set[str] = set()

        def stop(signal: str, provider: Any, by: Deadline):
            meter = self.meter_provider
            if meter is not None and provider is meter:
                return lambda: meter.shutdown(timeout_millis=by.remaining_millis())
            processor = processors.get(signal)

            def call() -> None:
                # Our processor first, with the deadline; the provider's own
                # shutdown then finds it stopped and only marks itself.
                if processor is not None and processor.shutdown(by) is False:
                    left_behind.add(signal)
                provider.shutdown()

            return call

        # Spans and logs first, metrics last: the final metric collection then
        # reports this worker's complete export counts (gunicorn_otel.exported).
        # Metrics keep a slice of the budget so they are not starved.
        providers = self._providers()
        meter = providers.pop(METRICS, None)
        reserve = min(0.5, 0.1 * self.settings.shutdown_timeout) if meter is not None else 0.0
        first = deadline.earlier_by(reserve)
        done = run_all({name: stop(name, p, first) for name, p in providers.items()}, first)
        if meter is not None:
            done.update(run_all({METRICS: stop(METRICS, meter, deadline)}, deadline))
        for signal in list(left_behind):
            done[signal] = False
        for signal, finished in done.items():
            if not finished:
                self._abandon(signal)
        self._count_metric_exports_left_running()
        elapsed = time.monotonic() - started
        in_time = all(done.values())
        log.info(
            "gunicorn-otel: pid %s flushed in %.2fs%s: %s",
            self.pid,
            elapsed,
            "" if in_time else " (deadline reached)",
            self.stats.summary(),
        )
        return in_time

    def _count_metric_exports_left_running(self) -> None:
        """A metric export still running now never completes: the SDK reader's
        ``shutdown`` returns when its join times out, leaving its export thread
        blocked on the collector, and this process is about to exit."""
        from gunicorn_otel._worker.counting import CountingMetricExporter

        exporter = self._exporters.get(METRICS)
        if isinstance(exporter, CountingMetricExporter):
            exporter.abandon_in_flight()

    def _abandon(self, signal: str) -> None:
        """Stop a pipeline that missed the deadline and count what it still held."""
        exporter = self._exporters.get(signal)
        if exporter is not None:
            try:
                exporter.shutdown()
            except Exception:
                log.debug("gunicorn-otel: exporter shutdown failed", exc_info=True)
        if signal == METRICS:
            return  # counted by _count_metric_exports_left_running
        counts = self.stats.snapshot()[signal]
        unaccounted = counts["accepted"] - counts["exported"] - sum(counts["dropped"].values())
        self.stats.dropped(signal, SHUTDOWN_DEADLINE, unaccounted)

    def _here(self) -> bool:
        return self._generation == forksafe.generation

    def _owns_live_providers(self) -> bool:
        return self.started and not self.stopped and self._here()


def _tracer_provider(settings: Settings, resource, active_span_processor):
    from opentelemetry.sdk.trace import TracerProvider

    from gunicorn_otel._worker.sampling import build_sampler

    return TracerProvider(
        resource=resource,
        sampler=build_sampler(settings.sampler, settings.sampler_arg),
        shutdown_on_exit=False,
        active_span_processor=active_span_processor,
    )


# What adopting a claimed provider after patching needs from the SDK's
# ``TracerProvider`` (opentelemetry-sdk >= 1.45, ``opentelemetry/sdk/trace/__init__.py``):
# without them, nothing is claimed and the worker builds as before.
_ADOPTION_API = ("_update_resource", "_set_tracer_configurator", "_tracers_lock")


def _span_encoder(span_processor, exporter) -> str:
    """ "C", "Python", or "" where no span goes through ``otlp_wire`` (gRPC, console): for the ready line.

    Our batchers encode each span as it ends with the function they were given;
    the SDK's processors (``GUNICORN_OTEL_PROCESSOR=batch`` or ``simple``) leave
    it to the exporter, which calls ``otlp_wire.encode_span`` at export.
    """
    from gunicorn_otel._worker import otlp_wire

    if getattr(exporter, "prepare_span", None) is None:  # not our OTLP/HTTP exporter
        return ""
    prepare = getattr(getattr(span_processor, "batcher", None), "_prepare", None) or otlp_wire.encode_span
    return "C" if prepare is otlp_wire.NATIVE else "Python"


def claim_tracing(settings: Settings) -> None:
    """Set this process's ``TracerProvider`` as the global one now, before its pipeline exists.

    For gevent workers, whose pipelines are built in ``post_worker_init``
    (after ``monkey.patch_all()``) while Gunicorn imports the app before it: a
    tracer the app takes at import (``tracer = trace.get_tracer(__name__)``,
    an instrumentor's middleware) is then the SDK's own, not a ``ProxyTracer``,
    which adds a generator context manager to every ``start_as_current_span``
    for the life of the worker (``opentelemetry/trace/__init__.py``).

    Only what is safe before patching is built here: the provider, with an
    empty resource (the resource detectors run in threads, and some do network
    I/O: they run in ``Runtime.start``, after patching, and ``_take_claimed``
    merges their resource in, as the SDK's own fork handler does) and an
    ``ActiveSpanProcessor`` with no processor yet.  Neither imports an
    exporter, ``ssl`` or the SDK's logs module, or starts a thread.  Spans
    ended before ``Runtime.start`` attaches the pipeline are not exported, as
    with the proxy's no-op tracer; if the start fails, ``release_claim``
    disables the provider's tracers.
    """
    global _claimed
    if _claimed is not None or settings.disabled or TRACES not in settings.enabled_signals():
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource

    from gunicorn_otel._worker.active_span_processor import ActiveSpanProcessor

    active = ActiveSpanProcessor()
    provider = _tracer_provider(settings, Resource.get_empty(), active)
    if not all(hasattr(provider, name) for name in _ADOPTION_API):
        return
    _set_global("TracerProvider", trace.set_tracer_provider, trace.get_tracer_provider, provider)
    _claimed = (provider, active)


def _take_claimed(resource):
    """The claimed (provider, active processor), now owned by the caller, with ``resource`` and gevent's locks."""
    global _claimed
    claimed, _claimed = _claimed, None
    if claimed is None:
        return None
    import threading

    provider, active = claimed
    # Built before patching: its two locks are native.  Nothing holds them
    # here; new ones are the patched kind (the SDK's fork handler replaces
    # ``_tracers_lock`` the same way).
    provider._tracers_lock = threading.Lock()
    active._lock = threading.Lock()
    provider._update_resource(resource)  # also the resource of every tracer already handed out
    return claimed


def release_claim() -> None:
    """The worker's start failed: turn the claimed provider's tracers off (non-recording spans, as a no-op tracer's)."""
    global _claimed
    claimed, _claimed = _claimed, None
    if claimed is None:
        return
    try:
        from opentelemetry.sdk.trace import _disable_tracer_configurator

        claimed[0]._set_tracer_configurator(tracer_configurator=_disable_tracer_configurator)
    except Exception:  # the spans then record, and go nowhere
        log.debug("gunicorn-otel: could not turn the claimed tracer provider off", exc_info=True)


def _set_global(what: str, setter, getter, provider) -> None:
    """Set a global provider, or say clearly why ours is not the global one.

    The API's set-once flag means a provider configured earlier wins.  What
    ``opentelemetry-instrument`` (or a ``sitecustomize``) built is taken over at
    config load (``gunicorn_otel._master.zero_code``); what is set after that in
    the master (the rest of a user config, a ``--preload`` app) is not.
    """
    setter(provider)
    if getter() is not provider:
        log.warning(
            "gunicorn-otel: a global %s was already set in this process (%s); "
            "gunicorn-otel's is not global, so instrumentation keeps using the other one. "
            "It was set after gunicorn_otel.conf loaded (later in the Gunicorn config, or at import of a "
            "--preload app): use opentelemetry's get_*_provider() there instead of setting one.",
            what,
            type(getter()).__name__,
        )
