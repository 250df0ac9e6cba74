"""Zero-code request telemetry: wrap the worker's loaded app in OpenTelemetry's middleware.

With ``GUNICORN_OTEL_WRAP_APP=true`` a Flask, Django or plain WSGI/ASGI app gets a
SERVER span and the HTTP server metrics per request without a code change.
``wrap_loaded_app`` runs in ``post_worker_init``: Gunicorn has loaded the app
(``Worker.init_process`` calls ``load_wsgi`` just before the hook) and the
worker has not served yet.  Where the app lives depends on the worker class:

* ``worker.wsgi``: sync and gthread (read per request), gevent and tornado
  (read when ``run()`` builds the server), and uvicorn's worker, which hands
  it to uvicorn in ``_serve`` (``uvicorn_worker/_workers.py``);
* ``worker.asgi``: Gunicorn's asgi worker, read per connection by
  ``ASGIProtocol`` (``gunicorn/asgi/protocol.py``) and by the lifespan
  manager, which the ASGI middleware passes through untouched.

A framework's own instrumentation is never doubled.  The app and whatever it
wraps (``app``/``application``/``wsgi_app`` instance attributes, as
middlewares and Flask keep them) are left alone when one of them is a FastAPI
app (native telemetry from 0.163, ``fastapi_otel`` before), an
``OpenTelemetryMiddleware``, an object an OpenTelemetry instrumentor has
instrumented (``_is_instrumented_by_opentelemetry``, or a class from
``opentelemetry.instrumentation``), or a Django handler with the
OpenTelemetry Django middleware installed.  A tornado ``Application`` is not
a WSGI app, and uvicorn serving a WSGI app is not wrapped either.

Headers: the middlewares capture none unless the standard
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_*`` variables name them.
If those are set and ``..._SANITIZE_FIELDS`` is not, credentials and session
headers are redacted by default (``SENSITIVE_HEADERS``).  The ASGI
middleware's per-message "http send"/"http receive" spans are left out: they
would triple the spans per request for no request-level information.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys

log = logging.getLogger(__name__)

SANITIZE_VARIABLE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
# Regexes, matched case-insensitively against the whole header name by the middleware.
SENSITIVE_HEADERS = (
    "authorization,proxy-authorization,cookie,set-cookie,"
    ".*api[-_]?key.*,.*token.*,.*secret.*,.*session.*,.*password.*,.*csrf.*"
)
_INNER_ATTRIBUTES = ("app", "application", "wsgi_app", "_app")
_MAX_DEPTH = 16


def _modules(obj) -> list[str]:
    return [cls.__module__ or "" for cls in type(obj).__mro__]


def _own_skip_reason(obj) -> str | None:
    modules = _modules(obj)
    name = type(obj).__name__
    if name == "OpenTelemetryMiddleware" or any(m.startswith("opentelemetry.instrumentation") for m in modules):
        return f"{name} is OpenTelemetry instrumentation already"
    try:
        instrumented = getattr(obj, "_is_instrumented_by_opentelemetry", False) is True
    except Exception:  # noqa: BLE001 - a hostile __getattr__ must not break the worker
        instrumented = False
    if instrumented:
        return f"{name} is instrumented by an OpenTelemetry instrumentor already"
    if any(m == "fastapi" or m.startswith("fastapi.") for m in modules):
        return "FastAPI instruments itself (native telemetry, or fastapi_otel on older versions)"
    if any(m.startswith("tornado.") for m in modules):
        return "a tornado application is not a WSGI app"
    if any(m.startswith("django.core.handlers") for m in modules) and _django_has_otel_middleware():
        return "Django has OpenTelemetry's Django middleware installed"
    return None


def _django_has_otel_middleware() -> bool:
    settings = getattr(sys.modules.get("django.conf"), "settings", None)
    try:
        middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    except Exception:  # noqa: BLE001 - unconfigured settings raise ImproperlyConfigured
        return False
    return any("opentelemetry" in str(m) for m in middleware)


def walk_apps(app):
    """The app and the apps it wraps (``app``/``application``/``wsgi_app``/``_app`` attributes).

    Reads instance dictionaries only, never properties, and stops after a few levels.
    """
    seen: set[int] = set()
    pending = [app]
    while pending and len(seen) < _MAX_DEPTH:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        inner = getattr(obj, "__dict__", None) or {}
        pending += [inner[a] for a in _INNER_ATTRIBUTES if inner.get(a) is not None]


def skip_reason(app) -> str | None:
    """Why ``app`` must not be wrapped, or None."""
    for obj in walk_apps(app):
        reason = _own_skip_reason(obj)
        if reason:
            return reason
    return None


def _looks_asgi(app) -> bool:
    return inspect.iscoroutinefunction(app) or (callable(app) and inspect.iscoroutinefunction(app.__call__))


def wrap_loaded_app(worker) -> bool:
    """Wrap the app ``worker`` loaded; True if it was wrapped."""
    attribute = "asgi" if hasattr(worker, "asgi") else "wsgi"
    app = getattr(worker, attribute, None)
    if app is None:
        return False
    uvicorn = any(cls.__name__ == "UvicornWorker" for cls in type(worker).__mro__)
    reason = skip_reason(app)
    if reason is None and uvicorn and not _looks_asgi(app):
        reason = "UvicornWorker serves ASGI apps only, and this does not look like one"
    if reason:
        log.info("gunicorn-otel: GUNICORN_OTEL_WRAP_APP: not wrapping %s: %s", type(app).__name__, reason)
        return False
    os.environ.setdefault(SANITIZE_VARIABLE, SENSITIVE_HEADERS)  # read by both middlewares
    wrapped: object
    try:
        from gunicorn_otel._worker import http_routes

        if attribute == "asgi" or uvicorn:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as AsgiMiddleware

            wrapped = AsgiMiddleware(
                http_routes.RouteNamingASGI(app),
                exclude_spans=["receive", "send"],
                default_span_details=http_routes.asgi_span_details,
            )
        else:
            from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiMiddleware

            wrapped = WsgiMiddleware(
                app,
                request_hook=http_routes.wsgi_request_hook,
                response_hook=http_routes.wsgi_response_hook,
            )
        http_routes.instrument_frameworks(app)
    except ImportError:
        log.error("gunicorn-otel: GUNICORN_OTEL_WRAP_APP needs pip install 'gunicorn-otel[wsgi]'; app left unwrapped")
        return False
    setattr(worker, attribute, wrapped)
    log.debug("gunicorn-otel: wrapped %s in %s", type(app).__name__, type(wrapped).__module__)
    return True
