"""OpenTelemetry for FastAPI apps, owned by gunicorn-otel's per-process runtime.

    from fastapi import FastAPI
    from fastapi_otel import otel_lifespan

    app = FastAPI(lifespan=otel_lifespan)

``with_otel(my_lifespan)`` combines it with a lifespan of your own.  See
``docs/fastapi.md``.
"""

from fastapi_otel import auto_configure
from fastapi_otel.lifespan import otel_lifespan, with_otel

# Before any app is built: FastAPI reads FASTAPI_OTEL_AUTO_CONFIGURE in FastAPI.__init__.
auto_configure.neutralise_env()

__all__ = ["otel_lifespan", "with_otel"]
