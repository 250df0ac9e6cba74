"""The same routes as ``wsgi_app`` as a bare ASGI 3 app, with lifespan support."""

import asyncio
import gc
import logging
import os
from urllib.parse import parse_qs

from opentelemetry import trace

from tests.apps import asgi_lifespan

tracer = trace.get_tracer("tests.app")
log = logging.getLogger("tests.app")
DEFAULT_SPANS = int(os.environ.get("APP_SPANS_PER_REQUEST", "1"))


async def _reply(send, body: bytes, status: int = 200):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await asgi_lifespan.serve(receive, send)
        return
    path = scope["path"]
    query = parse_qs(scope.get("query_string", b"").decode())
    if path == "/health":
        await _reply(send, b"ok")
    elif path == "/pid":
        await _reply(send, str(os.getpid()).encode())
    elif path == "/gc-frozen":
        await _reply(send, str(gc.get_freeze_count()).encode())
    elif path == "/unencodable":
        # The SDK accepts any name; neither OTLP encoder can write a non-string one.
        with tracer.start_as_current_span(123):
            pass
        await _reply(send, b"ok")
    elif path == "/log":
        with tracer.start_as_current_span("log-span"):
            log.warning(query.get("msg", ["hello"])[0])
        await _reply(send, b"ok")
    elif path == "/sleep":
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        with tracer.start_as_current_span("slept"):
            pass
        await _reply(send, b"ok")
    elif path == "/":
        for i in range(int(query.get("spans", [DEFAULT_SPANS])[0])):
            with tracer.start_as_current_span("work") as span:
                span.set_attribute("i", i)
        await _reply(send, b"ok")
    else:
        await _reply(send, b"not found", 404)
