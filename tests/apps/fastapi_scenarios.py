"""Run in a fresh interpreter by tests/test_fastapi.py: global providers are once per process.

    python fastapi_scenarios.py cycles|requests N

Prints one JSON line with what the test asserts on.
"""

import contextlib
import json
import sys
import threading


def export_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("Otel"))


def cycles(count: int) -> dict:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from fastapi_otel import otel_lifespan

    def make():
        app = FastAPI(lifespan=otel_lifespan)

        @app.get("/items/{item_id}")
        async def item(item_id: int):
            return {"item_id": item_id}

        return app

    app = make()
    with TestClient(app) as client:
        client.get("/items/1")
    after_one = threading.active_count()
    for _ in range(count):
        with TestClient(app):
            pass
    for _ in range(100):
        with TestClient(make()) as client:
            client.get("/items/2")
    return {"after_one": after_one, "after_all": threading.active_count(), "export_threads": export_threads()}


def requests(count: int) -> dict:
    from fastapi.testclient import TestClient

    from fastapi_app import app

    with TestClient(app) as client:
        greetings = {client.get(f"/items/{i}").json()["greeting"] for i in range(count)}
    return {"greetings": sorted(greetings)}


if __name__ == "__main__":
    scenario, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"cycles": cycles, "requests": requests}[scenario](n)))
