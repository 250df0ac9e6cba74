"""fastapi_otel under TestClient, Gunicorn's asgi worker and UvicornWorker, on both FastAPI generations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import APPS, ROOT

SERVER = 2  # SPAN_KIND_SERVER


def run_scenario(env: dict, *args: str) -> dict:
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(APPS)])}
    done = subprocess.run(
        [sys.executable, str(APPS / "fastapi_scenarios.py"), *args],
        env=full_env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def server_spans(receiver):
    return [s for s in receiver.spans() if s.kind == SERVER]


def test_one_server_span_per_request_with_route_template_and_state(receiver):
    result, _ = run_scenario(otel_env(receiver.endpoint), "requests", "25")
    assert result["greetings"] == ["hello"], "lifespan state must reach request.state"
    spans = server_spans(receiver)
    assert len(spans) == 25
    assert {s.name for s in spans} == {"GET /items/{item_id}"}


def test_lifespan_cycles_and_app_instances_do_not_leak_threads(receiver):
    result, _ = run_scenario(otel_env(receiver.endpoint), "cycles", "1000")
    assert result["after_all"] == result["after_one"]
    assert result["export_threads"] == sorted(
        ["OtelBatchSpanRecordProcessor", "OtelBatchLogRecordProcessor", "OtelPeriodicExportingMetricReader"]
    )
    assert len(server_spans(receiver)) == 101


def test_auto_configure_does_not_double_export(receiver):
    env = otel_env(receiver.endpoint, FASTAPI_OTEL_AUTO_CONFIGURE="true")
    _, stderr = run_scenario(env, "requests", "10")
    assert len(server_spans(receiver)) == 10
    assert "FASTAPI_OTEL_AUTO_CONFIGURE=true would make FastAPI export every span a second time" in stderr


@pytest.mark.parametrize("worker_class", ["asgi", "uvicorn_worker.UvicornWorker"])
def test_gunicorn_workers_deliver_every_server_span_at_sigterm(worker_class, receiver, gunicorn):
    # Nothing is exported before SIGTERM: all spans come from the stop path.
    env = otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000")
    proc = gunicorn("fastapi_app:app", worker_class=worker_class, workers=2, env=env)
    for i in range(40):
        status, body = proc.get(f"/items/{i}")
        assert status == 200 and json.loads(body)["greeting"] == "hello"
    result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.returncode == 0
    spans = [s for s in server_spans(receiver) if s.name == "GET /items/{item_id}"]
    assert len(spans) == 40
    workers = set(proc.worker_pids())
    per_pid = {}
    for s in spans:
        per_pid.setdefault(s.resource["process.pid"], set()).add(s.resource["service.instance.id"])
    assert set(per_pid) <= workers
    ids = [next(iter(v)) for v in per_pid.values()]
    assert all(len(v) == 1 for v in per_pid.values()) and len(set(ids)) == len(ids)
    # worker_exit ran in each worker (restored for UvicornWorker by a pass-through SIGTERM handler).
    assert proc.log_text().count("gunicorn-otel: pid ") == 2, proc.log_text()
    assert "was sent SIGTERM" not in proc.log_text()


@pytest.mark.parametrize("worker_class", ["asgi", "uvicorn_worker.UvicornWorker"])
def test_bad_configuration_fails_startup_with_exit_code_3(worker_class, gunicorn):
    # No gunicorn_otel config: only the lifespan sees the settings.
    proc = gunicorn("fastapi_app:app", worker_class=worker_class, config=None,
                    env={"OTEL_BSP_SCHEDULE_DELAY": "abc"}, start=False)
    returncode, log = proc.run_to_exit(timeout=60)
    assert returncode == 3, log
    assert "OTEL_BSP_SCHEDULE_DELAY='abc' is invalid" in log


def test_standalone_lifespan_under_gunicorn_without_our_config(receiver, gunicorn):
    proc = gunicorn("fastapi_app:app", worker_class="uvicorn_worker.UvicornWorker", config=None,
                    workers=1, env=otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000"))
    for i in range(10):
        assert proc.get(f"/items/{i}")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    # Without our config uvicorn dies by the re-raised SIGTERM; the lifespan flush delivered everything.
    assert len([s for s in server_spans(receiver) if s.name == "GET /items/{item_id}"]) == 10
