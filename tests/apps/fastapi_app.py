"""A FastAPI app using ``otel_lifespan`` combined with a lifespan of its own (``with_otel``).

``/items/{item_id}?delay=S`` sleeps S seconds first, so concurrent requests
spread over several workers.
"""

import asyncio
import contextlib
import os

from fastapi import FastAPI, Request

from fastapi_otel import with_otel


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello"}


app = FastAPI(lifespan=with_otel(lifespan))


@app.get("/health")
async def health():
    return {"ok": True}


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request, delay: float = 0.0):
    if delay:
        await asyncio.sleep(delay)
    return {"item_id": item_id, "greeting": request.state.greeting, "pid": os.getpid()}
