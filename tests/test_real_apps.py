"""Real Django and Flask apps under Gunicorn: request telemetry named by route, quiet logs.

Each app is served as its users serve it, with ``GUNICORN_OTEL_WRAP_APP=true``,
and gets the requests a site gets: routed pages, a 404, a view that raises,
and logging with objects in ``extra``.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.conftest import otel_env
from tests.support.receiver import attributes

pytestmark = pytest.mark.slow  # real Gunicorn processes


SERVER = 2
STATUS_ERROR = 2
# What must never appear in the log, whatever the app logs: the SDK's attribute
# warnings, gevent's teardown tracebacks.
NOISE = re.compile(r"Invalid type|invalid attribute|Exception ignored")

DJANGO = {
    "app": "django_site:application",
    "item": "GET items/<int:item_id>/",
    "route": "items/<int:item_id>/",
    "error_path": "/error/",
    "error": "GET error/",
    "log": "GET log",
}
FLASK = {
    "app": "flask_app:app",
    "item": "GET /items/<int:item_id>",
    "route": "/items/<int:item_id>",
    "error_path": "/error",
    "error": "GET /error",
    "log": "GET /log",
}


def wrap_env(endpoint, **overrides):
    return otel_env(endpoint, GUNICORN_OTEL_WRAP_APP="true", **overrides)


def server_spans(receiver) -> list:
    return [s for s in receiver.spans() if s.kind == SERVER]


def exception_events(span) -> list[dict]:
    return [attributes(e.attributes) for e in span.proto.events if e.name == "exception"]


def path_of(span) -> str:
    return span.attributes.get("url.path") or span.attributes.get("http.target", "")


def serve_a_site(proc, site) -> None:
    slash = "/" if site is DJANGO else ""  # Django's routes end in a slash, Flask's here do not
    expected = {f"/items/42{slash}": 200, f"/items/7{slash}": 200, "/nope": 404, site["error_path"]: 500, "/log": 200}
    for path, status in expected.items():
        assert proc.get(path)[0] == status, path


@pytest.mark.matrix
@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
@pytest.mark.parametrize("site", [DJANGO, FLASK], ids=["django", "flask"])
def test_spans_named_by_route_errors_recorded_logs_clean(site, worker_class, receiver, gunicorn):
    proc = gunicorn(site["app"], worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    serve_a_site(proc, site)
    proc.stop(signal.SIGTERM, timeout=30)

    spans = [s for s in server_spans(receiver) if not s.name.endswith("health")]
    names = sorted(s.name for s in spans)
    assert names == sorted([site["item"], site["item"], "GET", site["error"], site["log"]]), names
    items = [s for s in spans if s.name == site["item"]]
    assert {s.attributes["http.route"] for s in items} == {site["route"]}
    assert all("http.route" not in s.attributes for s in spans if s.name == "GET")
    children = [s for s in receiver.spans() if s.name == "load-item"]
    assert {c.trace_id for c in children} == {s.trace_id for s in items}, "view spans are children of the server span"

    (error,) = [s for s in spans if s.name == site["error"]]
    assert error.proto.status.code == STATUS_ERROR
    events = exception_events(error)
    assert [e["exception.type"] for e in events] == ["RuntimeError"], events
    assert "boom from a" in events[0]["exception.message"]
    assert all(s.proto.status.code != STATUS_ERROR for s in spans if s is not error)

    log = proc.log_text()
    assert not NOISE.search(log), log
    (warning,) = [r for r in receiver.log_records() if r.body.startswith("app-warning")]
    assert warning.attributes["count"] == 3
    assert warning.attributes["request"].startswith(("<WSGIRequest: GET '/log'>", "<Request 'http://127.0.0.1"))
    if site is DJANGO:
        assert warning.attributes["thing"] == "<Opaque thing>"
        # Django's own records carry the request and the status code.
        (not_found,) = [r for r in receiver.log_records() if r.body == "Not Found: /nope"]
        assert not_found.attributes["status_code"] == 404
        assert not_found.attributes["request"] == "<WSGIRequest: GET '/nope'>"
        assert [r for r in receiver.log_records() if r.body == "Internal Server Error: /error/"]


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_plain_wsgi_app_named_by_method_errors_recorded(worker_class, receiver, gunicorn):
    proc = gunicorn("plain_errors:wsgi", worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    for path, status in (("/items/42", 200), ("/fail", 500), ("/boom", 500)):
        assert proc.get(path)[0] == status, path
    proc.stop(signal.SIGTERM, timeout=30)
    check_plain_spans(server_spans(receiver), "plain_errors.Boom")


@pytest.mark.matrix
@pytest.mark.parametrize("worker_class", ["asgi", "uvicorn_worker.UvicornWorker"])
def test_plain_asgi_app_named_by_method_or_scope_route_errors_recorded(worker_class, receiver, gunicorn):
    proc = gunicorn("plain_errors:asgi", worker_class=worker_class, workers=1, env=wrap_env(receiver.endpoint))
    for path, status in (("/items/42", 200), ("/fail", 500), ("/boom", 500), ("/routed/9", 200)):
        assert proc.get(path)[0] == status, path
    proc.stop(signal.SIGTERM, timeout=30)
    spans = server_spans(receiver)
    (routed,) = [s for s in spans if s.name == "GET /routed/{n}"]
    assert routed.attributes["http.route"] == "/routed/{n}"
    check_plain_spans([s for s in spans if s is not routed], "plain_errors.Boom")


def check_plain_spans(spans, exception_type: str) -> None:
    spans = [s for s in spans if path_of(s) != "/health"]  # the readiness probe
    assert sorted(s.name for s in spans) == ["GET", "GET", "GET"], [s.name for s in spans]
    by_path = {path_of(s): s for s in spans}
    assert by_path["/items/42"].proto.status.code != STATUS_ERROR
    assert by_path["/fail"].proto.status.code == STATUS_ERROR
    assert exception_events(by_path["/fail"]) == [], "a 500 without an exception has no exception event"
    boom = by_path["/boom"]
    assert boom.proto.status.code == STATUS_ERROR
    assert [e["exception.type"] for e in exception_events(boom)] == [exception_type]
