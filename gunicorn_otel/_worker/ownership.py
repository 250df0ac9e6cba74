"""What a worker does once its own providers are the global ones.

* Instrumentors that opentelemetry-instrument loaded and that belong to one
  process (``gunicorn_otel._master.zero_code.PER_PROCESS``) are redone here: the
  logging instrumentor without its handler (our log bridge already sends each
  record once), system metrics as part of the runtime metrics.
* Per-worker ``process.*`` metrics (``GUNICORN_OTEL_RUNTIME_METRICS``).
* The watch for foreign pipelines, and its two metrics.
* With traces on, tracers taken before the worker's provider was set (a
  ``--preload`` app's, instrumentors loaded by ``opentelemetry-instrument``)
  stop wrapping each span in a second context manager (``proxy_tracers``).

Each step is independent and a failure costs that step only, never the worker.
"""

from __future__ import annotations

import logging

from gunicorn_otel._master import zero_code

log = logging.getLogger("gunicorn_otel")


def adopt(runtime) -> None:
    settings = runtime.settings
    per_process = set(zero_code.state.per_process)
    _step("logging instrumentation", _relog, zero_code.LOGGING_INSTRUMENTOR in per_process)
    meter_provider = runtime.meter_provider
    if meter_provider is not None:
        wanted_everything = zero_code.SYSTEM_METRICS_INSTRUMENTOR in per_process
        if settings.runtime_metrics or wanted_everything:
            _step("runtime metrics", _runtime_metrics, meter_provider, wanted_everything)
    _step("foreign pipeline watch", _watch, meter_provider)
    if runtime.tracer_provider is not None:
        _step("proxy tracer shortcut", _proxy_tracers)


def _step(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        log.warning("gunicorn-otel: %s could not start in this worker", what, exc_info=True)


def _relog(active: bool) -> None:
    if not active:
        return
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    LoggingInstrumentor().instrument(enable_log_auto_instrumentation=False, skip_dep_check=True)


def _runtime_metrics(meter_provider, everything: bool) -> None:
    from gunicorn_otel._worker import runtime_metrics

    runtime_metrics.start(meter_provider, everything=everything)


def _proxy_tracers() -> None:
    from gunicorn_otel._worker import proxy_tracers

    proxy_tracers.install()


def _watch(meter_provider) -> None:
    from gunicorn_otel._worker import foreign

    watcher = foreign.watch()
    if meter_provider is not None:
        foreign.register_metrics(meter_provider, watcher)
