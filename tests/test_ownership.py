"""One owner per worker: foreign pipelines named, replaced hooks reported, runtime metrics, one identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import APPS

pytestmark = pytest.mark.slow  # real Gunicorn processes

LEAKS = 5
FOREIGN_WARNING = "built a second OpenTelemetry BatchSpanProcessor in worker"


def _points(receiver, name: str) -> list:
    return [(m.resource, p) for m in receiver.metrics() if m.name == name for p in m.data_points()]


def _attributes(point) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in point.attributes}


def _last_by_kind(receiver, name: str) -> dict:
    last: dict = {}
    for _, point in _points(receiver, name):
        last[_attributes(point).get("kind")] = point.as_int
    return last


@pytest.mark.parametrize(
    "worker_class, app",
    [
        ("gthread", "zero_code_app:app"),
        ("gevent", "zero_code_app:app"),
        ("uvicorn_worker.UvicornWorker", "fastapi_zero_code_app:app"),  # a sync endpoint, in the thread pool
    ],
)
def test_a_provider_per_request_is_warned_once_and_counted(worker_class, app, receiver, gunicorn):
    proc = gunicorn(app, worker_class=worker_class, workers=1, env=otel_env(receiver.endpoint))
    for _ in range(LEAKS):
        assert proc.get("/leak")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert log.count(FOREIGN_WARNING) == 1, log
    assert "zero_code_app.py:" in log.split(FOREIGN_WARNING)[0].splitlines()[-1]
    assert "opentelemetry.trace.get_tracer_provider()" in log
    assert "Traceback" not in log
    counted = _last_by_kind(receiver, "gunicorn_otel.foreign_pipelines")
    assert counted == {"TracerProvider": LEAKS, "BatchSpanProcessor": LEAKS}
    threads = [p.as_int for _, p in _points(receiver, "gunicorn_otel.worker.threads")]
    assert threads and threads[-1] >= 1


def test_replaced_hook_is_reported_at_start_and_by_check(receiver, gunicorn):
    conf = str(APPS / "replaced_hook_conf.py")
    proc = gunicorn("wsgi_app:app", config=conf, env=otel_env(receiver.endpoint), ready_log=r"user post_fork ran")
    assert proc.get("/?spans=2")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert log.count("hook post_fork (post_fork in") == 1, log
    assert "post_fork = chain(gunicorn_otel.conf.post_fork, post_fork)" in log
    assert [s for s in receiver.spans() if s.name == "work"] == [], "the replaced hook really lost the worker's spans"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_OTEL_"))}
    env.update(
        OTEL_SERVICE_NAME="shop",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        PYTHONPATH=os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn_otel", "check", "--", "-c", conf, "zero_code_app:app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "WARNING: hook post_fork" in done.stdout
    assert "post_fork = chain(gunicorn_otel.conf.post_fork, post_fork)" in done.stdout


def test_chained_hook_is_not_reported(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", config=str(APPS / "chained_hook_conf.py"), env=otel_env(receiver.endpoint))
    assert proc.get("/?spans=2")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert "user post_fork ran" in log
    assert "replaces gunicorn-otel's" not in log
    assert len([s for s in receiver.spans() if s.name == "work"]) == 2


def test_check_reports_providers_built_at_import(tmp_path):
    (tmp_path / "eager_app.py").write_text(
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'']\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_OTEL_"))}
    env.update(OTEL_SERVICE_NAME="shop", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn_otel",
            "check",
            "--connect-timeout",
            "0.2",
            "--",
            "-c",
            "python:gunicorn_otel.conf",
            "--chdir",
            str(tmp_path),
            "eager_app:app",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout
    assert f"builds an OpenTelemetry TracerProvider at import time ({tmp_path}/eager_app.py:3)" in out, out
    assert f"BatchSpanProcessor at import time ({tmp_path}/eager_app.py:4)" in out
    assert "hook " not in out


RUNTIME_METRICS = {
    "process.cpu.time",
    "process.memory.usage",
    "process.thread.count",
    "process.open_file_descriptor.count",
    "cpython.gc.collections",
    "process.context_switches",
}


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_runtime_metrics_per_worker(worker_class, receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=2, env=otel_env(receiver.endpoint))
    assert proc.get("/?spans=1")[0] == 200
    if worker_class == "gevent":
        for _ in range(4):
            assert proc.get("/native-threads") == (200, b"0")
    workers = set(proc.worker_pids())
    proc.stop(signal.SIGTERM, timeout=30)
    for name in RUNTIME_METRICS:
        resources = [r for r, _ in _points(receiver, name)]
        assert {r["process.pid"] for r in resources} == workers, name
        assert {r["gunicorn.worker.slot"] for r in resources} == {1, 2}, name
    assert "Traceback" not in proc.log_text()


def test_runtime_metrics_switch(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", env=otel_env(receiver.endpoint, GUNICORN_OTEL_RUNTIME_METRICS="false"))
    proc.stop(signal.SIGTERM, timeout=30)
    names = {m.name for m in receiver.metrics()}
    assert "gunicorn_otel.exported" in names
    assert not names & RUNTIME_METRICS


def test_runtime_metrics_without_the_library_say_so_once(receiver, gunicorn):
    proc = gunicorn(
        "wsgi_app:app", workers=2, config=str(APPS / "no_system_metrics_conf.py"), env=otel_env(receiver.endpoint)
    )
    assert proc.get("/?spans=1")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert log.count("opentelemetry-instrumentation-system-metrics is not installed") == 1, log
    assert "Traceback" not in log
    names = {m.name for m in receiver.metrics()}
    assert "gunicorn_otel.exported" in names
    assert not names & RUNTIME_METRICS


def test_one_service_identity(receiver, gunicorn):
    env = otel_env(receiver.endpoint, OTEL_RESOURCE_ATTRIBUTES="service.instance.id=pod-7,team=shop")
    del env["OTEL_SERVICE_NAME"]
    proc = gunicorn("wsgi_app:app", workers=2, env=env)
    assert proc.get("/?spans=1")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert log.count("service.name is not set") == 1, log
    assert log.count("sets service.instance.id='pod-7'") == 1, log
    resources = [m.resource for m in receiver.metrics()]
    master = [r for r in resources if r.get("gunicorn.role") == "master"]
    workers = [r for r in resources if "gunicorn.worker.slot" in r]
    assert master and workers
    assert {r["service.name"] for r in master + workers} == {"unknown_service:gunicorn"}
    ids = {r["process.pid"]: r["service.instance.id"] for r in master + workers}
    assert len(set(ids.values())) == 3 and "pod-7" not in ids.values()
    assert {r["team"] for r in master + workers} == {"shop"}
