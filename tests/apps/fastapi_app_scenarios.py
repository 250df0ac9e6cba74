"""FastAPI apps driven by TestClient, one scenario per fresh interpreter.

    python fastapi_app_scenarios.py SCENARIO [N]

Global providers are set once per process, so tests/test_fastapi.py runs each
scenario in its own interpreter, exporting to the test's receiver.  The last
line printed is JSON with what the test asserts on.
"""

import contextlib
import json
import sys
import threading

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from fastapi_otel import otel_lifespan, with_otel

EXPORT_THREADS = ("OtelBatch", "OtelPeriodic", "gunicorn-otel-export-")


def export_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(EXPORT_THREADS))


def with_item_route(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    return app


def get_items(app, count: int) -> list:
    with TestClient(app) as client:
        return [client.get(f"/items/{i}") for i in range(count)]


def requests(count: int) -> dict:
    """The shipped example app: ``with_otel`` and lifespan state."""
    from fastapi_app import app

    greetings = {r.json()["greeting"] for r in get_items(app, count)}
    return {"greetings": sorted(greetings)}


def cycles(count: int) -> dict:
    """``count`` lifespan cycles of one app, then 100 app instances with one request each."""
    app = with_item_route(FastAPI(lifespan=otel_lifespan))
    get_items(app, 1)
    after_one = threading.active_count()
    for _ in range(count):
        with TestClient(app):
            pass
    for _ in range(100):
        get_items(with_item_route(FastAPI(lifespan=otel_lifespan)), 1)
    return {"after_one": after_one, "after_all": threading.active_count(), "export_threads": export_threads()}


def unanswered_cycles(count: int) -> dict:
    """Lifespan cycles against a collector that never answers: seconds each exit took."""
    import time

    app = with_item_route(FastAPI(lifespan=otel_lifespan))
    durations = []
    for _ in range(count):
        with TestClient(app) as client:
            client.get("/items/1")
            started = time.monotonic()
        durations.append(time.monotonic() - started)
    return {"exits": durations}


def explicit_auto_configure(count: int) -> dict:
    """A first app starts the runtime; a second asks FastAPI to add its own exporters."""
    get_items(with_item_route(FastAPI(lifespan=otel_lifespan)), 1)
    second = with_item_route(FastAPI(lifespan=otel_lifespan, telemetry={"auto_configure": True}))
    get_items(second, count)
    return {"export_threads": export_threads()}


def instrumented_before(count: int) -> dict:
    """The app was instrumented with the contrib package at construction, as its docs say."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = with_item_route(FastAPI(lifespan=otel_lifespan))
    FastAPIInstrumentor.instrument_app(app)
    get_items(app, count)
    return {}


def instrumented_in_lifespan(count: int) -> dict:
    """The user's lifespan calls ``instrument_app`` after the stack was built, then ours runs."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    @contextlib.asynccontextmanager
    async def lifespan(app):
        FastAPIInstrumentor.instrument_app(app)
        async with otel_lifespan(app):
            yield

    get_items(with_item_route(FastAPI(lifespan=lifespan)), count)
    return {}


def user_middleware(count: int) -> dict:
    """User middleware still runs, once per request, after the stack is rebuilt."""
    built = []

    class Stamp:
        def __init__(self, app):
            built.append(self)
            self.app = app

        async def __call__(self, scope, receive, send):
            async def stamped(message):
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"x-stamp", b"1")]
                await send(message)

            await self.app(scope, receive, send if scope["type"] != "http" else stamped)

    app = with_item_route(FastAPI(lifespan=otel_lifespan))
    app.add_middleware(Stamp)
    responses = get_items(app, count)
    return {"stamped": sum(r.headers.get("x-stamp") == "1" for r in responses), "instances": len(built)}


def on_event(count: int) -> dict:
    """An existing app with ``on_event`` handlers gets telemetry by wrapping its lifespan."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # on_event is deprecated, still common
    app = with_item_route(FastAPI())

    @app.on_event("startup")
    async def startup():
        app.state.started = True

    @app.get("/started")
    async def started(request: Request):
        return {"started": request.app.state.started}

    app.router.lifespan_context = with_otel(app.router.lifespan_context)
    with TestClient(app) as client:
        flags = [client.get("/started").json()["started"]]
        flags += [client.get(f"/items/{i}").status_code == 200 for i in range(count)]
    return {"all_true": all(flags)}


SCENARIOS = {
    f.__name__: f
    for f in (
        requests,
        cycles,
        unanswered_cycles,
        explicit_auto_configure,
        instrumented_before,
        instrumented_in_lifespan,
        user_middleware,
        on_event,
    )
}

if __name__ == "__main__":
    name, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(SCENARIOS[name](n)))
