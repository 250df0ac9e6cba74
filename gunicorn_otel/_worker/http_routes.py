"""Server span names for ``GUNICORN_OTEL_WRAP_APP``: ``{method} {http.route}``, else ``{method}``.

OpenTelemetry's WSGI and ASGI middlewares name a server span ``GET /items/42/``
(``get_default_span_name``, ``get_default_span_details``): one name per URL,
unbounded cardinality, against the HTTP semantic conventions, which want the
route template when the framework knows it and only the method otherwise.
The middleware cannot know the route (routing happens inside the app), so:

* the span starts named ``{method}`` (``HTTP`` for a method outside the known
  set, as ``opentelemetry.util.http.sanitize_method`` decides);
* when the response starts, the route is looked up where frameworks leave it,
  and if found the span is renamed ``{method} {route}`` and gets ``http.route``:

  - Flask (any Werkzeug app): ``environ["werkzeug.request"].url_rule.rule``,
    e.g. ``/items/<int:item_id>`` (Werkzeug's ``Request`` stores itself there);
  - Django: ``request.resolver_match.route``, e.g. ``items/<int:item_id>/``
    (the format OpenTelemetry's Django instrumentation uses).  Django builds
    its request inside the handler, so the handler's ``get_response`` (and
    ``get_response_async``) is wrapped to copy the route into the WSGI environ
    or ASGI scope, which the request shares (``WSGIRequest.environ``,
    ``ASGIRequest.scope``);
  - ASGI frameworks that put the route in the scope (``scope["route"]``, a
    string or an object with ``path_format``/``path``).

Errors: a response of 500 or more sets the span's status to ERROR (the
middlewares do that), and an exception that reaches the middleware is
recorded as an exception event (``trace.use_span`` / ``start_as_current_span``
record it).  Django and Flask turn a view's exception into a 500 before it
reaches the middleware; their ``got_request_exception`` signals are used to
record it on the server span all the same.

Nothing here raises into the request: a lookup that fails leaves the name
``{method}``.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

from gunicorn_otel._worker.app_wrapping import walk_apps

log = logging.getLogger(__name__)

ROUTE_KEY = "gunicorn_otel.http_route"
HTTP_ROUTE = "http.route"


def method_name(method: Any) -> str:
    """The span name when no route is known: ``GET``, or ``HTTP`` for other methods."""
    from opentelemetry.util.http import sanitize_method

    sanitized = sanitize_method(str(method or "").strip())
    return "HTTP" if sanitized in ("_OTHER", "") else sanitized


# -- finding the route ----------------------------------------------------------


def _route_text(route: Any) -> str | None:
    if isinstance(route, str):
        return route or None
    for attribute in ("path_format", "path", "rule"):
        value = getattr(route, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def wsgi_route(environ: dict) -> str | None:
    """The route template the app matched for this request, if it said."""
    route = environ.get(ROUTE_KEY)
    if route:
        return route
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    return _route_text(getattr(rule, "rule", None))


def asgi_route(scope: dict) -> str | None:
    route = scope.get(ROUTE_KEY)
    if route:
        return route
    return _route_text(scope.get("route"))


def _rename(span, method: Any, route: str | None) -> None:
    if route and span.is_recording():
        span.update_name(f"{method_name(method)} {route}")
        span.set_attribute(HTTP_ROUTE, route)


# -- WSGI: the middleware's hooks ------------------------------------------------


def wsgi_request_hook(span, environ: dict) -> None:
    try:
        span.update_name(method_name(environ.get("REQUEST_METHOD")))
    except Exception:  # naming must never cost the request
        log.debug("gunicorn-otel: naming a server span failed", exc_info=True)


def wsgi_response_hook(span, environ: dict, status: str, response_headers) -> None:
    try:
        _rename(span, environ.get("REQUEST_METHOD"), wsgi_route(environ))
    except Exception:
        log.debug("gunicorn-otel: naming a server span failed", exc_info=True)


# -- ASGI: a name at start, a thin wrapper that renames at response start -------


def asgi_span_details(scope: dict) -> tuple[str, dict]:
    if scope.get("type") == "websocket":
        return scope.get("path", "websocket"), {}
    return method_name(scope.get("method")), {}


class RouteNamingASGI:
    """Inside OpenTelemetry's ASGI middleware: renames its server span when the response starts.

    The middleware makes its server span current before calling the app, so
    the span is taken on entry, before the app can start spans of its own.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        from opentelemetry import trace

        span = trace.get_current_span()

        async def naming_send(message):
            if message.get("type") == "http.response.start":
                try:
                    _rename(span, scope.get("method"), asgi_route(scope))
                except Exception:
                    log.debug("gunicorn-otel: naming a server span failed", exc_info=True)
            await send(message)

        return await self.app(scope, receive, naming_send)


# -- frameworks: Django's route, Django's and Flask's swallowed exceptions --------


def instrument_frameworks(app) -> list[str]:
    """Hook the Django handler or Flask app inside ``app``; the names of what was hooked."""
    hooked = []
    django_base = sys.modules.get("django.core.handlers.base")
    flask = sys.modules.get("flask")
    try:
        for obj in walk_apps(app):
            if django_base is not None and isinstance(obj, django_base.BaseHandler):
                _hook_django(obj)
                hooked.append("django")
            elif flask is not None and isinstance(obj, flask.Flask):
                flask.got_request_exception.connect(_flask_exception, obj)
                hooked.append("flask")
    except Exception:
        log.warning("gunicorn-otel: could not hook the framework inside %s", type(app).__name__, exc_info=True)
    return hooked


def _remember_django_route(request) -> None:
    try:
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        if isinstance(route, str) and route:
            carrier = getattr(request, "environ", None)
            scope = getattr(request, "scope", None)
            for target in (scope, carrier):
                if isinstance(target, dict):
                    target[ROUTE_KEY] = route
                    break
    except Exception:
        log.debug("gunicorn-otel: reading the Django route failed", exc_info=True)


def _hook_django(handler) -> None:
    if getattr(handler, "_gunicorn_otel_routes", False):
        return
    handler._gunicorn_otel_routes = True
    get_response = handler.get_response

    @functools.wraps(get_response)
    def get_response_remembering_route(request):
        try:
            return get_response(request)
        finally:
            _remember_django_route(request)

    handler.get_response = get_response_remembering_route
    get_response_async = getattr(handler, "get_response_async", None)
    if get_response_async is not None:

        @functools.wraps(get_response_async)
        async def get_response_async_remembering_route(request):
            try:
                return await get_response_async(request)
            finally:
                _remember_django_route(request)

        handler.get_response_async = get_response_async_remembering_route

    from django.core.signals import got_request_exception

    got_request_exception.connect(_django_exception, dispatch_uid="gunicorn_otel.http_routes")


def _record_on_server_span(exception: BaseException | None) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    span = trace.get_current_span()
    if exception is None or not span.is_recording() or getattr(span, "kind", None) is not SpanKind.SERVER:
        return
    span.record_exception(exception)
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))


def _django_exception(sender, request=None, **kwargs) -> None:
    """Django's ``got_request_exception``: sent while it handles a view's exception."""
    try:
        _record_on_server_span(sys.exc_info()[1])
    except Exception:
        log.debug("gunicorn-otel: recording a Django exception failed", exc_info=True)


def _flask_exception(sender, exception=None, **kwargs) -> None:
    try:
        _record_on_server_span(exception)
    except Exception:
        log.debug("gunicorn-otel: recording a Flask exception failed", exc_info=True)
