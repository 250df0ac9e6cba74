"""Zero-code request telemetry: wrap the worker's loaded app in OpenTelemetry's middleware.

With ``GUNICORN_OTEL_WRAP_APP=true`` a Flask, Django or plain WSGI/ASGI app gets a
SERVER span and HTTP server metrics per request without a code change.  The
app is wrapped in ``post_worker_init``, after Gunicorn loaded it and before the
worker serves; where it lives depends on the worker class: ``worker.wsgi``
(sync, gthread, gevent, tornado, and uvicorn's worker, which reads it when it
starts serving) or ``worker.asgi`` (Gunicorn's asgi worker).

A framework's own instrumentation is never doubled: FastAPI apps (native
telemetry from 0.163, ``fastapi_otel`` before), tornado applications, and apps
already wrapped in an ``OpenTelemetryMiddleware`` are left alone.  The
middlewares capture no HTTP headers unless the standard
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` variables ask for them.
"""

from __future__ import annotations

import logging

log = logging.getLogger("gunicorn_otel")


def _module_of(app) -> str:
    return " ".join(cls.__module__ for cls in type(app).__mro__)


def _skip_reason(app) -> str | None:
    modules = _module_of(app)
    if type(app).__name__ == "OpenTelemetryMiddleware":
        return "already wrapped in an OpenTelemetryMiddleware"
    if "fastapi" in modules:
        return "FastAPI instruments itself (native telemetry, or fastapi_otel on older versions)"
    if "tornado." in modules:
        return "a tornado application is not a WSGI app"
    return None


def wrap_loaded_app(worker) -> None:
    is_asgi_worker = hasattr(worker, "asgi")
    attribute = "asgi" if is_asgi_worker else "wsgi"
    app = getattr(worker, attribute, None)
    if app is None:
        return
    reason = _skip_reason(app)
    if reason:
        log.info("gunicorn-otel: GUNICORN_OTEL_WRAP_APP: not wrapping %s: %s", type(app).__name__, reason)
        return
    uvicorn = any(cls.__name__ == "UvicornWorker" for cls in type(worker).__mro__)
    try:
        if is_asgi_worker or uvicorn:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        else:
            from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    except ImportError:
        log.error("gunicorn-otel: GUNICORN_OTEL_WRAP_APP needs pip install 'gunicorn-otel[wsgi]'; app left unwrapped")
        return
    setattr(worker, attribute, OpenTelemetryMiddleware(app))
