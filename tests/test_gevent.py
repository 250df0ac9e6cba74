"""Real gunicorn gevent workers: complete delivery, a clean log, no native threads, bounded exit."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.conftest import otel_env
from tests.support import slack
from tests.support.gunicorn_process import load
from tests.support.receiver import OTLPGrpcReceiver, blackhole

pytestmark = pytest.mark.slow  # real Gunicorn processes

# What the usual recipes print under gevent; none of it may appear with ours.
BAD_LOG = re.compile(r"Traceback|MonkeyPatchWarning|KeyError|Exception ignored|Warning|Queue full|Failed to export")


@pytest.mark.parametrize("worker_class", ["gevent", "gevent_pywsgi"])
@pytest.mark.parametrize(
    "preload", [pytest.param(False, marks=pytest.mark.matrix), True], ids=["no-preload", "preload"]
)
def test_every_span_delivered_clean_log_no_native_threads(worker_class, preload, receiver, gunicorn):
    args = ("--preload",) if preload else ()
    proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=2, env=otel_env(receiver.endpoint), args=args)
    ok, errors = load(proc.base_url, "/?spans=4", requests=2000, concurrency=20)
    assert (ok, errors) == (2000, 0)
    for _ in range(4):  # ask each worker (connections are spread across both)
        status, body = proc.get("/native-threads")
        assert status == 200
        assert int(body) == 0, "the plugin must not start native threads in a gevent worker"
        # The tracer provider is set in post_fork, before Gunicorn imports the
        # app; a --preload app was imported in the master, where none is set.
        assert proc.get("/tracer") == (200, b"ProxyTracer" if preload else b"Tracer")
    proc.stop(signal.SIGTERM, timeout=30)
    spans = [s for s in receiver.spans() if s.name == "work"]
    assert len(spans) == 2000 * 4
    # The provider was set before patching with an empty resource; the full
    # one (the SDK's telemetry.sdk.*, ours) is merged in after patching.
    resources = {(s.resource.get("telemetry.sdk.language"), s.resource.get("process.pid")) for s in spans}
    assert {language for language, _ in resources} == {"python"}, resources
    assert len({pid for _, pid in resources}) == 2, resources
    log = proc.log_text()
    assert not BAD_LOG.search(log), log
    assert log.count("dropped=0") == 2 * 3, log  # every signal of both workers


def test_a_span_no_encoder_can_write_costs_that_span_only(receiver, gunicorn):
    # Spans are encoded as they end, on the request greenlet: a failure there
    # must neither fail the request nor take the rest of the batch with it.
    proc = gunicorn("wsgi_app:app", worker_class="gevent", workers=1, env=otel_env(receiver.endpoint))
    assert proc.get("/?spans=3") == (200, b"ok")
    assert proc.get("/unencodable") == (200, b"ok")
    assert proc.get("/?spans=3") == (200, b"ok")
    proc.stop(signal.SIGTERM, timeout=30)
    assert len([s for s in receiver.spans() if s.name == "work"]) == 6
    log = proc.log_text()
    assert "dropped 1 traces item(s): no encoder could write them" in log, log
    assert "traces accepted=7 exported=6 dropped=1 (export_failed=1)" in log, log


def test_exit_is_bounded_against_a_black_hole(gunicorn):
    bound = 2.0
    with blackhole() as hole:
        env = otel_env(hole.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT=str(bound))
        proc = gunicorn("wsgi_app:app", worker_class="gevent", workers=2, env=env)
        ok, _ = load(proc.base_url, "/?spans=2", requests=200, concurrency=10)
        assert ok == 200
        # While exports hang, the hub keeps serving.
        started = time.monotonic()
        assert proc.get("/health")[0] == 200
        assert time.monotonic() - started < 1.0 + slack.BUSY  # a frozen hub: the export timeout, 10 s
        result = proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert result.returncode == 0
    assert result.elapsed < bound + slack.STOP, (result.elapsed, log)
    assert len(flushes := proc.flush_times()) == 2 and max(flushes) < bound + slack.BUSY, (flushes, log)
    assert log.count("(deadline reached)") == 2, log
    assert "Traceback" not in log


def test_grpc_export_after_patching(gunicorn):
    with OTLPGrpcReceiver() as grpc_receiver:
        env = otel_env(grpc_receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
        proc = gunicorn("wsgi_app:app", worker_class="gevent", workers=1, env=env)
        ok, _ = load(proc.base_url, "/?spans=3", requests=100, concurrency=5)
        assert ok == 100
        proc.stop(signal.SIGTERM, timeout=30)
        assert len([s for s in grpc_receiver.spans() if s.name == "work"]) == 300
    log = proc.log_text()
    assert not BAD_LOG.search(log), log


def test_grpc_black_hole_does_not_freeze_the_hub(gunicorn):
    # Without grpc.experimental.gevent.init_gevent() a blocking gRPC call
    # freezes the whole hub for the export timeout.
    with blackhole() as hole:
        env = otel_env(
            hole.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_TIMEOUT="10",  # a frozen hub or an unbounded stop: 10 s
            OTEL_BSP_SCHEDULE_DELAY="50",
            GUNICORN_OTEL_SHUTDOWN_TIMEOUT="2",
        )
        proc = gunicorn("wsgi_app:app", worker_class="gevent", workers=1, env=env)
        assert proc.get("/?spans=600")[0] == 200  # more than a batch: an export starts now
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            assert proc.get("/health")[0] == 200
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5 + slack.BUSY, slowest  # a frozen hub: the gRPC timeout
        result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.elapsed < 2.0 + slack.STOP, (result.elapsed, proc.log_text())
    assert len(flushes := proc.flush_times()) == 1 and max(flushes) < 2.0 + slack.BUSY, proc.log_text()
