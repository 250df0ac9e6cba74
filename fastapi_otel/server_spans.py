"""Exactly one SERVER span per request, named with the route template, on both FastAPI generations.

* FastAPI 0.163 and later (``fastapi.telemetry`` exists) emit their own server
  span as soon as a global provider is set, which the runtime does.  We add
  nothing.  An app built with ``telemetry={"tracing": False}`` has asked for no
  spans, and gets none.  If the contrib middleware is in the app's stack too,
  FastAPI sees it and steps aside (``fastapi/telemetry/_asgi.py``, ``_legacy_otel``).
* Older FastAPI: ``opentelemetry-instrumentation-fastapi``.  Its
  ``instrument_app`` replaces ``app.build_middleware_stack``, but Starlette
  builds the stack on the app's first ASGI call (``Starlette.__call__``), and
  that call is the lifespan itself: instrumenting from a lifespan alone leaves
  the built stack unchanged and silently produces no spans.  So after
  instrumenting we rebuild the stack; the new one serves every request.  Your
  middleware classes are instantiated once more, at startup.
"""

from __future__ import annotations

import importlib.util
import warnings

# The contrib middleware, by name: importing it would import the contrib package on new FastAPI too.
_CONTRIB_MIDDLEWARE = ("opentelemetry.instrumentation.asgi", "OpenTelemetryMiddleware")


def native() -> bool:
    """Whether this FastAPI makes its own server spans (0.163 and later)."""
    return importlib.util.find_spec("fastapi.telemetry") is not None


def contrib_in_stack(app) -> bool:
    """Whether the app's built middleware stack contains the contrib middleware."""
    layer, seen = getattr(app, "middleware_stack", None), set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        if (type(layer).__module__, type(layer).__name__) == _CONTRIB_MIDDLEWARE:
            return True
        layer = getattr(layer, "app", None)
    return False


def ensure_one_per_request(app, current) -> None:
    """Make the app emit one server span per request, through ``current``'s providers."""
    if native():
        return
    tracer_provider = getattr(current, "tracer_provider", None)
    meter_provider = getattr(current, "meter_provider", None)
    if tracer_provider is None and meter_provider is None:
        return  # telemetry off: nothing to record into
    if contrib_in_stack(app):
        return  # instrumented before serving, or by an earlier lifespan cycle
    from fastapi import FastAPI

    if not isinstance(app, FastAPI):
        warnings.warn(
            f"otel_lifespan: {type(app).__name__} is not a FastAPI app; no server spans added",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            # Like FastAPI's native telemetry: no INTERNAL span per ASGI send/receive.
            exclude_spans=["receive", "send"],
        )
    # Instrumented now, or by someone after the stack was built: rebuild it.
    app.middleware_stack = app.build_middleware_stack()
