"""A FastAPI app using ``otel_lifespan`` combined with a lifespan of its own."""

import contextlib
import logging
import os

from fastapi import FastAPI, Request

from fastapi_otel import with_otel

log = logging.getLogger("tests.fastapi")


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello"}


app = FastAPI(lifespan=with_otel(lifespan))


@app.get("/health")
async def health():
    return {"ok": True}


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request):
    return {"item_id": item_id, "greeting": request.state.greeting, "pid": os.getpid()}
