"""fastapi_otel under TestClient, plain uvicorn, Gunicorn's asgi worker and UvicornWorker.

The same file runs against the newest FastAPI (native telemetry) and the oldest
we support (contrib instrumentation); see .ci/run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fastapi_otel import server_spans
from tests.conftest import otel_env
from tests.support import slack
from tests.support.gunicorn_process import APPS, ROOT, free_port, load, pid_alive
from tests.support.receiver import blackhole

pytestmark = pytest.mark.slow  # real Gunicorn processes

SERVER = 2  # SPAN_KIND_SERVER
ITEM_ROUTE = "GET /items/{item_id}"
WORKER_CLASSES = ["asgi", "uvicorn_worker.UvicornWorker"]
# Nothing is exported before the stop: every span at the receiver was delivered by the stop path.
HOLD_SPANS = {
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "8192",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8192",
}
native_only = pytest.mark.skipif(not server_spans.native(), reason="FastAPI < 0.163 has no telemetry= option")


def app_env(env: dict) -> dict:
    return {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(APPS)])}


def run_scenario(env: dict, name: str, count: int = 0) -> tuple[dict, str]:
    """Run one scenario of tests/apps/fastapi_app_scenarios.py in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, str(APPS / "fastapi_app_scenarios.py"), name, str(count)],
        env=app_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def server_span_names(receiver) -> list[str]:
    return [s.name for s in receiver.spans() if s.kind == SERVER]


def item_spans(receiver) -> list:
    return [s for s in receiver.spans() if s.kind == SERVER and s.name == ITEM_ROUTE]


# -- TestClient: one owner per process, one server span per request -------------


@pytest.mark.matrix
def test_one_server_span_per_request_named_by_route_and_state_reaches_request(receiver):
    result, _ = run_scenario(otel_env(receiver.endpoint), "requests", 25)
    assert result["greetings"] == ["hello"], "lifespan state must reach request.state through with_otel"
    assert server_span_names(receiver) == [ITEM_ROUTE] * 25
    made_by = "fastapi" if server_spans.native() else "opentelemetry.instrumentation.fastapi"
    assert {s.scope for s in receiver.spans() if s.kind == SERVER} == {made_by}


def test_lifespan_cycles_and_app_instances_reuse_one_runtime(receiver):
    result, stderr = run_scenario(otel_env(receiver.endpoint), "cycles", 1000)
    assert result["after_all"] == result["after_one"], "no thread may be left behind by a cycle or an app"
    assert result["export_threads"] == sorted(  # one per signal
        ["gunicorn-otel-export-traces", "gunicorn-otel-export-logs", "OtelPeriodicExportingMetricReader"]
    )
    assert "Overriding of current" not in stderr and "already instrumented" not in stderr, stderr
    assert server_span_names(receiver) == [ITEM_ROUTE] * 101


def test_lifespan_exit_waits_for_an_unanswering_collector_once():
    bound = 1.0
    with blackhole() as hole:
        env = otel_env(hole.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT=str(bound))
        started = time.monotonic()
        result, _ = run_scenario(env, "unanswered_cycles", 5)
        elapsed = time.monotonic() - started
    first, *rest = result["exits"]
    assert bound - 0.1 < first < bound + 0.5 + slack.BUSY, "the first exit flush is bounded (unbounded: ~10 s)"
    assert sum(rest) < 0.5 + slack.BUSY, "later exits do not wait for a collector that did not answer (else ~4 s)"
    assert elapsed < bound + slack.START, "interpreter exit is short too (process start included)"


def test_auto_configure_variable_is_switched_off_with_a_warning(receiver):
    env = otel_env(receiver.endpoint, FASTAPI_OTEL_AUTO_CONFIGURE="true")
    _, stderr = run_scenario(env, "requests", 10)
    assert server_span_names(receiver) == [ITEM_ROUTE] * 10
    if server_spans.native():
        assert "FASTAPI_OTEL_AUTO_CONFIGURE=true would make FastAPI export every span a second time" in stderr


@native_only
def test_explicit_auto_configure_is_disarmed_with_a_warning(receiver):
    result, stderr = run_scenario(otel_env(receiver.endpoint), "explicit_auto_configure", 10)
    assert server_span_names(receiver) == [ITEM_ROUTE] * 11, "each span exported once"
    assert len(result["export_threads"]) == 3, result
    assert "FastAPI's auto_configure attached its own exporters" in stderr, stderr


@pytest.mark.parametrize("scenario", ["instrumented_before", "instrumented_in_lifespan"])
def test_app_also_instrumented_with_contrib_still_gets_one_server_span(scenario, receiver):
    run_scenario(otel_env(receiver.endpoint), scenario, 10)
    assert server_span_names(receiver) == [ITEM_ROUTE] * 10


def test_user_middleware_survives_the_rebuilt_stack(receiver):
    result, _ = run_scenario(otel_env(receiver.endpoint), "user_middleware", 10)
    assert result["stamped"] == 10
    # Old FastAPI: the stack is rebuilt once after instrumenting, so the class is built twice.
    assert result["instances"] == (1 if server_spans.native() else 2)
    assert server_span_names(receiver) == [ITEM_ROUTE] * 10


def test_existing_lifespan_with_on_event_handlers_can_be_wrapped(receiver):
    result, _ = run_scenario(otel_env(receiver.endpoint), "on_event", 5)
    assert result["all_true"]
    assert server_span_names(receiver).count(ITEM_ROUTE) == 5


# -- Gunicorn with our config: nothing lost at stop ----------------------------------


def get_until_each_worker_answered(proc, workers: set, at_least: int, timeout: float = 20) -> list[dict]:
    """GET on new connections until every worker has answered (the app returns its pid)."""
    replies = []
    deadline = time.monotonic() + timeout
    while (len(replies) < at_least or {r["pid"] for r in replies} != workers) and time.monotonic() < deadline:
        status, body = proc.get(f"/items/{len(replies)}")
        assert status == 200
        replies.append(json.loads(body))
    assert {r["pid"] for r in replies} == workers, f"not every worker answered {len(replies)} requests"
    return replies


@pytest.mark.matrix
@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_every_server_span_arrives_after_sigterm(worker_class, receiver, gunicorn):
    env = otel_env(receiver.endpoint, **HOLD_SPANS)
    proc = gunicorn("fastapi_app:app", worker_class=worker_class, workers=2, env=env)
    workers = set(proc.worker_pids())
    replies = get_until_each_worker_answered(proc, workers, at_least=100)
    assert {r["greeting"] for r in replies} == {"hello"}, "lifespan state reaches request.state"
    assert receiver.spans() == []

    result = proc.stop(signal.SIGTERM, timeout=30)

    assert result.returncode == 0
    assert result.elapsed < 5.0, "well within GUNICORN_OTEL_SHUTDOWN_TIMEOUT=5 (test env)"
    spans = item_spans(receiver)
    assert len(spans) == len(replies)
    instance_ids = {}
    for span in spans:
        instance_ids.setdefault(span.resource["process.pid"], set()).add(span.resource["service.instance.id"])
    assert set(instance_ids) == workers, "both workers served and exported"
    assert all(len(ids) == 1 for ids in instance_ids.values())
    assert len({next(iter(ids)) for ids in instance_ids.values()}) == 2, "a distinct service.instance.id per worker"
    log = proc.log_text()
    for pid in workers:  # worker_exit ran in each (restored for UvicornWorker by our config)
        assert f"gunicorn-otel: pid {pid} flushed" in log, log
    assert log.count("gunicorn-otel: pid ") == len(workers), "one flush per worker, none twice"
    assert "was sent SIGTERM" not in log
    assert "was already set in this process" not in log, "the lifespan must not build a second runtime"


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_stop_is_bounded_when_the_collector_does_not_answer(worker_class, gunicorn):
    bound = 2.0
    with blackhole() as hole:
        env = otel_env(hole.endpoint, GUNICORN_OTEL_SHUTDOWN_TIMEOUT=str(bound), **HOLD_SPANS)
        proc = gunicorn("fastapi_app:app", worker_class=worker_class, workers=2, env=env)
        assert load(proc.base_url, "/items/1", requests=20, concurrency=4) == (20, 0)
        result = proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    assert result.returncode == 0
    # One budget per worker: the lifespan leaves the flush to worker_exit.
    assert result.elapsed < bound + slack.STOP, (result.elapsed, log)  # unbounded: 10 s or more
    assert len(flushes := proc.flush_times()) == 2 and max(flushes) < bound + slack.BUSY, (flushes, log)
    assert log.count("(deadline reached)") == 2, log


# -- Standalone: only the lifespan ---------------------------------------------------


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_bad_configuration_fails_startup_and_gunicorn_exits_3(worker_class, gunicorn):
    # One worker: with several, Gunicorn 27.0.1 can reap a second boot failure
    # inside halt() and exit 1 with a HaltServer traceback (a Gunicorn race;
    # it still stops).
    proc = gunicorn(
        "fastapi_app:app",
        worker_class=worker_class,
        workers=1,
        config=None,
        env={"OTEL_BSP_SCHEDULE_DELAY": "abc"},
        start=False,
    )
    returncode, log = proc.run_to_exit(timeout=30)
    assert returncode == 3, log
    assert "gunicorn-otel: invalid configuration: OTEL_BSP_SCHEDULE_DELAY='abc' is invalid" in log
    assert len(proc.worker_pids()) == 1, "the master stops instead of replacing the failed worker"


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_lifespan_alone_delivers_every_span_under_gunicorn(worker_class, receiver, gunicorn):
    # Without our config UvicornWorker dies by the re-raised SIGTERM (no
    # worker_exit, no atexit): the lifespan flush is all there is.
    env = otel_env(receiver.endpoint, **HOLD_SPANS)
    proc = gunicorn("fastapi_app:app", worker_class=worker_class, config=None, workers=2, env=env)
    assert load(proc.base_url, "/items/3", requests=50, concurrency=4) == (50, 0)
    proc.stop(signal.SIGTERM, timeout=30)
    assert len(item_spans(receiver)) == 50


class Uvicorn:
    """``python -m uvicorn`` run as a user would, stopped by pid."""

    def __init__(self, app: str, env: dict) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=str(ROOT),
            env=app_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, self.popen.stdout.read().decode(errors="replace")
            if load(self.base_url, "/health", requests=1, concurrency=1, timeout=2) == (1, 0):
                return
            time.sleep(0.05)
        raise AssertionError(f"uvicorn not ready after {timeout}s")

    def stop(self, sig: int, timeout: float = 20) -> int:
        os.kill(self.popen.pid, sig)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if pid_alive(self.popen.pid) and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self.popen.stdout.close()


def test_plain_uvicorn_delivers_every_span_at_sigterm(receiver):
    server = Uvicorn("fastapi_app:app", otel_env(receiver.endpoint, **HOLD_SPANS))
    try:
        server.wait_ready()
        assert load(server.base_url, "/items/5", requests=30, concurrency=3) == (30, 0)
        # uvicorn re-raises SIGTERM after its lifespan shutdown: no atexit, the lifespan flush is all there is.
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    assert len(item_spans(receiver)) == 30
