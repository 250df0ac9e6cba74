"""A FastAPI app as zero-code users write it, for UvicornWorker.

``/call`` makes a `requests` call (a client span when run under
opentelemetry-instrument); ``/leak`` is a sync endpoint, run in the thread
pool, that builds its own provider and batch processor per request, as crewAI's
``Telemetry()`` did (crewAI #2279).
"""

import logging
import os

import requests
from fastapi import FastAPI
from zero_code_app import TARGET, _leak

from fastapi_otel import otel_lifespan

log = logging.getLogger("tests.fastapi_zero_code_app")
app = FastAPI(lifespan=otel_lifespan)


@app.get("/health")
async def health():
    return {"ok": True}


@app.get("/call")
def call():
    try:
        status = requests.get(TARGET, timeout=5).status_code
    except requests.RequestException as exc:
        status = type(exc).__name__
    log.warning("called %s: %s", TARGET, status)
    return {"pid": os.getpid()}


@app.get("/leak")
def leak():
    _leak()
    return {"pid": os.getpid()}
