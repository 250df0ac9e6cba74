"""Build a worker's telemetry pipeline in a throw-away process: can it start at all?

``gunicorn-otel check`` runs ``python -m gunicorn_otel._worker.build_probe`` as
a child process with the same environment.  The child builds what a worker
builds after fork (exporters, processors, providers, the log bridge) from the
same settings, prints one JSON line and leaves with ``os._exit``: nothing is
exported (no span or log record is made, self- and runtime metrics are off,
and the metric reader's first collection is a day away) and no exit hook runs.
A missing module, an exporter that refuses its options or any other error a
worker would meet in ``post_fork`` shows here, before deploying.

It builds the thread model's pipeline (or ``simple``'s, if chosen); the
gevent model's differs only in its processors, which need a patched process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback


def probe() -> dict:
    from gunicorn_otel import settings as settings_module

    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        return {"ok": False, "error": str(exc)}
    if settings.disabled:
        return {"ok": True, "signals": [], "detail": "telemetry disabled (OTEL_SDK_DISABLED)"}
    # Nothing to export: no own or runtime metrics, and a first collection a day away.
    settings = dataclasses.replace(
        settings,
        self_metrics=False,
        runtime_metrics=False,
        metric=dataclasses.replace(settings.metric, interval=86400.0),
    )
    try:
        from gunicorn_otel._master import worker_kinds
        from gunicorn_otel._worker import models, runtime

        model = worker_kinds.pipeline_model(worker_kinds.THREADS, settings.processor)
        if model == worker_kinds.GEVENT:
            model = worker_kinds.THREADS  # greenlet processors need a patched process
        models.get(model).setup(settings)
        built = runtime.get_or_create(settings, model=model)
        built.start()
    except Exception as exc:  # noqa: BLE001 - exactly what a worker would log and survive
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=-4),
        }
    signals = settings.enabled_signals()
    result: dict = {"ok": True, "signals": signals}
    if "traces" in signals:
        result["span_encoder"] = _span_encoder(settings, built)
    return result


def _span_encoder(settings, built) -> str:
    """Which encoder the span pipeline got (``Runtime.span_encoder``), and why."""
    from gunicorn_otel._worker import otlp_wire

    if built.span_encoder == "C":
        return "C extension"
    if not built.span_encoder:
        return "none of gunicorn-otel's (the traces exporter is not OTLP/HTTP)"
    if not settings.native_encoder:
        return "Python (GUNICORN_OTEL_NATIVE_ENCODER=false)"
    return f"Python: {otlp_wire.NATIVE_PROBLEM}; same bytes, more CPU"


def main() -> None:
    try:
        result = probe()
    except BaseException as exc:  # noqa: BLE001 - report, whatever happened
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no atexit, no provider shutdown: nothing leaves this process


if __name__ == "__main__":
    main()
