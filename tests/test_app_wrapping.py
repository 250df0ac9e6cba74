"""GUNICORN_OTEL_WRAP_APP: one SERVER span per request for apps with no instrumentation of their own."""

from __future__ import annotations

import http.client
import signal
import urllib.parse

import pytest

from tests.conftest import otel_env

pytestmark = pytest.mark.slow  # real Gunicorn processes

SERVER = 2


def wrap_env(endpoint, **overrides):
    return otel_env(endpoint, GUNICORN_OTEL_WRAP_APP="true", **overrides)


def target_of(span) -> str:
    """Path and query, from either semantic-conventions version."""
    attributes = span.attributes
    if "url.path" in attributes:
        query = attributes.get("url.query")
        return attributes["url.path"] + (f"?{query}" if query else "")
    if "http.url" in attributes:  # the ASGI middleware's http.target has no query
        url = urllib.parse.urlsplit(attributes["http.url"])
        return url.path + (f"?{url.query}" if url.query else "")
    return attributes.get("http.target", "")


def path_of(span) -> str:
    return target_of(span).split("?")[0]


def server_spans(receiver, path):
    return [s for s in receiver.spans() if s.kind == SERVER and path_of(s) == path]


def get(proc, path, headers):
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize(
    "worker_class, app",
    [
        ("sync", "wsgi_app:app"),
        ("gthread", "wsgi_app:app"),
        ("gevent", "wsgi_app:app"),
        ("asgi", "asgi_app:app"),
        ("uvicorn_worker.UvicornWorker", "asgi_app:app"),
        ("sync", "flask_like_app:app"),
    ],
)
def test_one_server_span_per_request(worker_class, app, receiver, gunicorn):
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    for _ in range(10):
        assert proc.get("/?spans=1")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    server = server_spans(receiver, "/")
    assert len(server) == 10, [(s.name, s.attributes) for s in receiver.spans() if s.kind == SERVER]
    # A plain app has no route template: the span is named by the method alone
    # (HTTP semantic conventions), never by the raw path.
    assert {s.name for s in server} == {"GET"}, {s.name for s in server}
    assert not [s for s in server if "http.route" in s.attributes]
    assert not [s for s in receiver.spans() if s.kind == SERVER and path_of(s) not in ("/", "/health")]
    work = [s for s in receiver.spans() if s.name == "work"]
    assert {w.trace_id for w in work} == {s.trace_id for s in server}, "app spans are children of the server span"
    assert {s.name for s in receiver.spans()} <= {"GET", "work"}, "no per-message ASGI spans"
    http_metrics = {m.name for m in receiver.metrics() if m.name.startswith("http.server.")}
    assert http_metrics & {"http.server.duration", "http.server.request.duration"}, http_metrics


def test_off_by_default(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", workers=1, env=otel_env(receiver.endpoint))
    for _ in range(5):
        assert proc.get("/")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    assert receiver.spans() and [s for s in receiver.spans() if s.kind == SERVER] == []


@pytest.mark.parametrize(
    "app, worker_class, path, named",
    [
        ("fastapi_app:app", "asgi", "/items/1", "FastAPI"),
        ("flask_like_app:fastapi_behind_middleware", "asgi", "/items/1", "PassThrough"),
        ("flask_like_app:self_wrapped", "sync", "/", "FlaskLike"),
    ],
)
def test_never_doubles_existing_instrumentation(app, worker_class, path, named, receiver, gunicorn):
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    for _ in range(5):
        assert proc.get(path)[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    assert len(server_spans(receiver, path)) == 5, [
        (s.name, s.attributes) for s in receiver.spans() if s.kind == SERVER
    ]
    assert f"not wrapping {named}" in proc.log_text()


@pytest.mark.parametrize("worker_class, app", [("sync", "wsgi_app:app"), ("asgi", "asgi_app:app")])
def test_headers(worker_class, app, receiver, gunicorn):
    secrets = {
        "Authorization": "Bearer s3cret",
        "Cookie": "session=s3cret",
        "X-Api-Key": "s3cret",
        "X-Custom": "visible",
    }
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    assert get(proc, "/?default", secrets) == 200
    proc.stop(signal.SIGTERM, timeout=30)
    captured = gunicorn(
        app,
        worker_class=worker_class,
        workers=1,
        env=wrap_env(receiver.endpoint, OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*"),
    )
    assert get(captured, "/?captured", secrets) == 200
    captured.stop(signal.SIGTERM, timeout=30)

    by_target = {target_of(s): s for s in server_spans(receiver, "/")}
    default, opted_in = by_target["/?default"], by_target["/?captured"]
    assert not [k for k in default.attributes if k.startswith("http.request.header.")], "nothing captured by default"
    headers = {k: v for k, v in opted_in.attributes.items() if k.startswith("http.request.header.")}
    assert headers["http.request.header.x_custom"] == ["visible"]
    for name in ("authorization", "cookie", "x_api_key"):
        assert headers[f"http.request.header.{name}"] == ["[REDACTED]"], headers
    assert "s3cret" not in repr(opted_in.attributes)
