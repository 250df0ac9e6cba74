"""Keep FastAPI's ``auto_configure`` from exporting through our providers a second time.

With ``FASTAPI_OTEL_AUTO_CONFIGURE=true`` (or ``FastAPI(telemetry={"auto_configure":
True})``), FastAPI 0.163+ configures export itself when ``lifespan.startup``
arrives, before any lifespan of the app runs (``fastapi/telemetry/_runtime.py``,
``lifespan`` and ``_configure_from_environment``):

* if a global provider exists (ours, under Gunicorn with our config), it adds
  its own ``BatchSpanProcessor`` + OTLP exporter, metric reader and log
  processor to it: every span, point and record is exported twice;
* if none exists yet (standalone, first startup), it sets its own providers as
  the globals, and ours can no longer become global.

Two defences:

* ``neutralise_env()`` runs when ``fastapi_otel`` is imported.  FastAPI reads the
  variable in ``FastAPI.__init__``, and an app using ``otel_lifespan`` is
  built after that import, so switching the variable off there prevents both
  cases.  It warns, because it changes the process environment.
* ``disarm()`` runs at lifespan startup for what slipped through (an explicit
  ``telemetry={"auto_configure": True}``, or an app built before the import):
  FastAPI's components attached to our providers are stopped and removed from
  its list, with a warning.  FastAPI keeps our providers in its "configured"
  list, so later startups do not attach again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from fastapi_otel import server_spans

log = logging.getLogger(__name__)

VARIABLE = "FASTAPI_OTEL_AUTO_CONFIGURE"


def neutralise_env() -> None:
    if not server_spans.native():
        return  # FastAPI before 0.163 does not read it
    if os.environ.get(VARIABLE, "").strip().lower() == "true":
        os.environ[VARIABLE] = "false"
        warnings.warn(
            f"{VARIABLE}=true would make FastAPI export every span a second time through the "
            f"provider gunicorn-otel owns; fastapi_otel set it to false. Unset {VARIABLE}.",
            RuntimeWarning,
            stacklevel=2,
        )


def disarm(current) -> None:
    """Stop the export components FastAPI's auto-configuration attached to ``current``'s providers."""
    if current is None or not server_spans.native():
        return
    from fastapi.telemetry import _runtime as fastapi_runtime

    ours = {
        "TRACES": current.tracer_provider,
        "METRICS": current.meter_provider,
        "LOGS": current.logger_provider,
    }
    attached = {
        signal
        for signal, provider in list(getattr(fastapi_runtime, "_configured", ()))
        if provider is not None and ours.get(signal) is provider
    }
    owned = getattr(fastapi_runtime, "_owned", None)
    if not attached or owned is None:
        return
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    kinds = {"TRACES": BatchSpanProcessor, "METRICS": MetricReader, "LOGS": BatchLogRecordProcessor}
    stopped = []
    with getattr(fastapi_runtime, "_lock", None) or contextlib.nullcontext():
        for component in list(owned):
            signal = next((s for s in attached if isinstance(component, kinds[s])), None)
            if signal is None:
                continue
            owned.remove(component)
            stopped.append((signal, component))
    for signal, component in stopped:
        try:
            if signal == "METRICS":
                current.meter_provider.remove_metric_reader(component)  # also shuts it down
            else:
                # A stopped batch processor drops what it is given (SDK BatchProcessor.emit).
                component.shutdown()
        except Exception:  # telemetry must not stop the app
            log.exception("gunicorn-otel: could not stop FastAPI's %s exporter", signal.lower())
    if stopped:
        # A warning, not a log line: standalone, our logger has no handler of its own.
        warnings.warn(
            "FastAPI's auto_configure attached its own exporters ("
            + ", ".join(sorted(s.lower() for s, _ in stopped))
            + ") to gunicorn-otel's providers; fastapi_otel stopped them so nothing is exported twice. "
            f"Remove telemetry={{'auto_configure': True}} and {VARIABLE}.",
            RuntimeWarning,
            stacklevel=2,
        )
