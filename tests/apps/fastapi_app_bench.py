"""FastAPI hello-world for bench/fastapi_bench.py: the same route, built several ways.

Each variant is built only when Gunicorn asks for it (``fastapi_app_bench:plain``),
so the uninstrumented run never imports OpenTelemetry's instrumentation.
"""

from fastapi import FastAPI


def _routes(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    return app


def _plain() -> FastAPI:
    return _routes(FastAPI())


def _contrib() -> FastAPI:
    # The upstream recipe: instrument at construction, provider from
    # bench/configs/upstream_post_fork.py (BatchSpanProcessor built in post_fork).
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = _routes(FastAPI())
    FastAPIInstrumentor.instrument_app(app)
    return app


def _ours() -> FastAPI:
    from fastapi_otel import otel_lifespan

    return _routes(FastAPI(lifespan=otel_lifespan))


def _ours_server_span_only() -> FastAPI:
    # FastAPI >= 0.163: its native telemetry without the per-request operation spans.
    from fastapi_otel import otel_lifespan

    return _routes(FastAPI(lifespan=otel_lifespan, telemetry={"operation_spans": False}))


_VARIANTS = {"plain": _plain, "contrib": _contrib, "ours": _ours, "ours_server_span_only": _ours_server_span_only}


def __getattr__(name: str) -> FastAPI:
    if name not in _VARIANTS:
        raise AttributeError(name)
    app = globals()[name] = _VARIANTS[name]()
    return app
