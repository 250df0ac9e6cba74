"""FastAPI lifespan extension of gunicorn-otel.

    from fastapi import FastAPI
    from fastapi_otel import otel_lifespan

    app = FastAPI(lifespan=otel_lifespan)

``with_otel(my_lifespan)`` combines it with a lifespan of your own.
"""

from fastapi_otel.lifespan import otel_lifespan, with_otel
from fastapi_otel.server_spans import neutralise_auto_configure

neutralise_auto_configure()

__all__ = ["otel_lifespan", "with_otel"]
