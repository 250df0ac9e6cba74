"""GUNICORN_OTEL_WRAP_APP: one SERVER span per request for apps with no instrumentation of their own."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import otel_env

SERVER = 2


@pytest.mark.parametrize("worker_class, app", [
    ("sync", "wsgi_app:app"), ("gthread", "wsgi_app:app"), ("gevent", "wsgi_app:app"),
    ("asgi", "asgi_app:app"), ("uvicorn_worker.UvicornWorker", "asgi_app:app"),
])
def test_one_server_span_per_request(worker_class, app, receiver, gunicorn):
    env = otel_env(receiver.endpoint, GUNICORN_OTEL_WRAP_APP="true")
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=env)
    for _ in range(10):
        assert proc.get("/?spans=1")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    server = [s for s in receiver.spans() if s.kind == SERVER and s.attributes.get("url.path", s.attributes.get("http.target")) != "/health"]
    assert len(server) == 10, [(s.name, s.attributes) for s in server]
    work = [s for s in receiver.spans() if s.name == "work"]
    assert {w.trace_id for w in work} == {s.trace_id for s in server}, "app spans are children of the server span"


def test_off_by_default(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", workers=1, env=otel_env(receiver.endpoint))
    for _ in range(5):
        assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    assert [s for s in receiver.spans() if s.kind == SERVER] == []


def test_fastapi_is_not_wrapped_twice(receiver, gunicorn):
    env = otel_env(receiver.endpoint, GUNICORN_OTEL_WRAP_APP="true")
    proc = gunicorn("fastapi_app:app", worker_class="asgi", workers=1, env=env)
    for i in range(5):
        assert proc.get(f"/items/{i}")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    server = [s for s in receiver.spans() if s.kind == SERVER and s.name.startswith("GET /items")]
    assert len(server) == 5
    assert "not wrapping FastAPI" in proc.log_text()
