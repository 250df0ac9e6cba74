"""Exactly one SERVER span per request, on both FastAPI generations.

* FastAPI 0.163 and later emit their own server span (``fastapi.telemetry``) as
  soon as a global provider exists, named with the route template.  We rely on
  it and add nothing.  If the app was also instrumented with the contrib
  middleware, FastAPI notices and steps aside, so there is still one span.
* Older FastAPI has no native telemetry: we use
  ``opentelemetry-instrumentation-fastapi``.  Its ``instrument_app`` wraps
  ``build_middleware_stack``, but Starlette builds the stack on the first ASGI
  call, which is the lifespan itself, so instrumenting from a lifespan alone
  produces no spans.  We rebuild the stack right after instrumenting; the
  rebuilt stack serves every request (user middleware classes are
  instantiated once more, at startup).
* ``FASTAPI_OTEL_AUTO_CONFIGURE=true`` makes FastAPI attach its own OTLP
  exporter to the provider during lifespan startup, before any user lifespan
  runs: every span would be exported twice.  Importing ``fastapi_otel``
  switches the variable off (apps are built after that import, since they pass
  ``otel_lifespan``), with a warning; an app configured explicitly with
  ``telemetry={"auto_configure": True}`` is reported at startup.
"""

from __future__ import annotations

import logging
import os
import warnings

log = logging.getLogger("gunicorn_otel")

AUTO_CONFIGURE = "FASTAPI_OTEL_AUTO_CONFIGURE"


def neutralise_auto_configure() -> None:
    if os.environ.get(AUTO_CONFIGURE, "").strip().lower() == "true":
        os.environ[AUTO_CONFIGURE] = "false"
        warnings.warn(
            f"{AUTO_CONFIGURE}=true would make FastAPI export every span a second time "
            "through the provider gunicorn-otel owns; fastapi_otel turned it off. Unset it.",
            RuntimeWarning,
            stacklevel=3,
        )


def has_native_telemetry() -> bool:
    try:
        import fastapi.telemetry  # noqa: F401
    except ImportError:
        return False
    return True


def ensure_one_server_span(app) -> None:
    telemetry = getattr(app, "_telemetry", None)
    if isinstance(telemetry, dict) and telemetry.get("auto_configure"):
        log.warning(
            "gunicorn-otel: this app was built with telemetry={'auto_configure': True}: FastAPI "
            "attached its own exporter to gunicorn-otel's provider and spans are exported twice. "
            "Remove auto_configure."
        )
    if has_native_telemetry() or getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app)
    # The stack was built for the lifespan call before we got here.
    app.middleware_stack = app.build_middleware_stack()
