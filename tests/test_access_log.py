"""Trace and span ids in Gunicorn's access log, matched against the spans received."""

from __future__ import annotations

import json
import re
import signal

import pytest

from gunicorn_otel._worker.access_log import FORMAT
from tests.conftest import otel_env

SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
IDS = re.compile(r'"GET (/\S*) HTTP/1.1" (\d+) .*trace_id=(\S+) span_id=(\S+)$')


def _access_lines(path) -> list[tuple[str, str, str]]:
    """(path, trace id, span id) for each request logged after the readiness probe."""
    with open(path) as f:
        found = [IDS.search(line) for line in f]
    return [(m.group(1), m.group(3), m.group(4)) for m in found if m and m.group(1) != "/health"]


def _assert_ids_match_server_spans(receiver, lines, requests: int) -> None:
    assert len(lines) == requests, lines
    assert receiver.wait_for(lambda: len([s for s in receiver.spans() if s.kind == SERVER]) >= requests + 1, timeout=15)
    server = {(s.trace_id, s.span_id) for s in receiver.spans() if s.kind == SERVER}
    for request_path, trace_id, span_id in lines:
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and re.fullmatch(r"[0-9a-f]{16}", span_id), lines
        assert (trace_id, span_id) in server, (request_path, trace_id, span_id, server)
    assert len({trace for _, trace, _ in lines}) == requests, "one trace per request"


APPS = {
    # GUNICORN_OTEL_WRAP_APP: the server span is OpenTelemetry's WSGI middleware's.
    "wrapped": ("wsgi_app:app", {"GUNICORN_OTEL_WRAP_APP": "true"}),
    # Django's own instrumentation makes the server span.
    "django": ("django_access:application", {}),
}


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
@pytest.mark.parametrize("app_name", list(APPS))
def test_wsgi_access_log_has_the_server_span_ids(receiver, gunicorn, tmp_path, worker_class, app_name):
    app, extra_env = APPS[app_name]
    access = tmp_path / "access.log"
    proc = gunicorn(
        app,
        worker_class=worker_class,
        workers=1,
        env=otel_env(receiver.endpoint, **extra_env),
        args=("--access-logfile", str(access), "--access-logformat", FORMAT),
    )
    paths = ["/", "/?spans=2", "/item/7" if app_name == "django" else "/log"]
    for request_path in paths:
        assert proc.get(request_path)[0] == 200
    proc.stop(signal.SIGTERM)
    _assert_ids_match_server_spans(receiver, _access_lines(access), len(paths))


def test_asgi_worker_access_log_has_the_server_span_ids(receiver, gunicorn, tmp_path):
    access = tmp_path / "access.log"
    proc = gunicorn(
        "asgi_app:app",
        worker_class="asgi",
        workers=1,
        env=otel_env(receiver.endpoint, GUNICORN_OTEL_WRAP_APP="true"),
        args=("--asgi-loop", "asyncio", "--access-logfile", str(access), "--access-logformat", FORMAT),
    )
    for request_path in ("/", "/log", "/?spans=3"):
        assert proc.get(request_path)[0] == 200
    proc.stop(signal.SIGTERM)
    _assert_ids_match_server_spans(receiver, _access_lines(access), 3)


def test_uvicorn_access_records_carry_the_ids(receiver, gunicorn, tmp_path):
    access = tmp_path / "access.log"
    log_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "formatters": {
            "access": {"format": "%(message)s trace_id=%(otelTraceID)s span_id=%(otelSpanID)s"},
            "error": {"format": "[%(process)d] [%(levelname)s] %(message)s"},
        },
        "handlers": {
            "access": {"class": "logging.FileHandler", "filename": str(access), "formatter": "access"},
            "error": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "error"},
        },
        "loggers": {
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
        },
    }
    config = tmp_path / "logging.json"
    config.write_text(json.dumps(log_config))
    proc = gunicorn(
        "asgi_app:app",
        worker_class="uvicorn_worker.UvicornWorker",
        workers=1,
        env=otel_env(receiver.endpoint, GUNICORN_OTEL_WRAP_APP="true"),
        args=("--log-config-json", str(config)),
    )
    for request_path in ("/", "/log", "/?spans=3"):
        assert proc.get(request_path)[0] == 200
    proc.stop(signal.SIGTERM)
    _assert_ids_match_server_spans(receiver, _access_lines(access), 3)
