"""FastAPI hello-world apps for bench/fastapi_bench.py: the same route, three ways."""

from fastapi import FastAPI


def _routes(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    return app


plain = _routes(FastAPI())


def _contrib():
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = _routes(FastAPI())
    FastAPIInstrumentor.instrument_app(app)
    return app


contrib = _contrib()


def _ours():
    from fastapi_otel import otel_lifespan

    return _routes(FastAPI(lifespan=otel_lifespan))


ours = _ours()
