"""Apps whose requests block their thread, hub or event loop: worker-timeout drills.

``/stuck?s=N`` blocks for N seconds without yielding (under gevent with the
unpatched ``time.sleep``, so the hub is blocked too; in the ASGI app with a
blocking call inside the coroutine, so the event loop is blocked).
``/slow?s=N`` waits cooperatively, as a healthy concurrent request does.
``/stuck?...&after_slow=1`` first waits (cooperatively, at most 10 s) until a
``/slow`` request is inside its span, so a test knows both are in flight.
Each request runs inside a SERVER span named after its path.
"""

import asyncio
import sys
import time
from urllib.parse import parse_qs

from opentelemetry import trace

from tests.apps import asgi_lifespan

tracer = trace.get_tracer("tests.stuck_app")
slow_in_flight = 0


def _blocking_sleep():
    if "gevent.monkey" in sys.modules and sys.modules["gevent.monkey"].is_module_patched("time"):
        return sys.modules["gevent.monkey"].get_original("time", "sleep")
    return time.sleep


def _seconds(query: str) -> float:
    return float(parse_qs(query).get("s", ["1"])[0])


def _after_slow(query: str) -> bool:
    return parse_qs(query).get("after_slow", ["0"])[0] == "1"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    global slow_in_flight
    query = environ.get("QUERY_STRING", "")
    with tracer.start_as_current_span("GET " + path, kind=trace.SpanKind.SERVER):
        if path == "/stuck":
            deadline = time.monotonic() + 10
            while _after_slow(query) and not slow_in_flight and time.monotonic() < deadline:
                time.sleep(0.01)  # gevent: patched, cooperative
            with tracer.start_as_current_span("blocking-call"):
                _blocking_sleep()(_seconds(query))
        elif path == "/slow":
            slow_in_flight += 1
            time.sleep(_seconds(query))  # gevent: patched, cooperative
            slow_in_flight -= 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await asgi_lifespan.serve(receive, send)
        return
    global slow_in_flight
    path = scope["path"]
    if path != "/health":
        with tracer.start_as_current_span("GET " + path, kind=trace.SpanKind.SERVER):
            query = scope.get("query_string", b"").decode()
            seconds = _seconds(query)
            if path == "/stuck":
                deadline = time.monotonic() + 10
                while _after_slow(query) and not slow_in_flight and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                with tracer.start_as_current_span("blocking-call"):
                    time.sleep(seconds)  # blocks the event loop: the point of this route
            elif path == "/slow":
                slow_in_flight += 1
                await asyncio.sleep(seconds)
                slow_in_flight -= 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"done"})
