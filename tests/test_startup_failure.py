"""Telemetry that cannot start: the worker says so in its ready line, and ``check`` finds it first.

The broken install is real: a ``requests`` package that fails to import sits
first on ``PYTHONPATH``, as a stale or half-removed package does (and as the
declared floor of ``opentelemetry-exporter-otlp-proto-http`` once left
``requests`` out).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import otel_env

pytestmark = pytest.mark.slow  # real Gunicorn processes


MISSING = "ModuleNotFoundError: No module named 'requests'"


@pytest.fixture
def broken_requests(tmp_path):
    package = tmp_path / "broken" / "requests"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'requests'\", name='requests')\n")
    return str(package.parent)


def check(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_OTEL_", "FASTAPI_OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn_otel", "check"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.matrix
def test_check_builds_a_pipeline_and_leaves_no_trace(receiver):
    done = check({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipeline: built in a child process (traces, metrics, logs)" in done.stdout
    assert (receiver.spans(), receiver.metrics(), receiver.log_records()) == ([], [], [])


def test_check_reports_a_pipeline_that_cannot_be_built(receiver, broken_requests):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PYTHONPATH": broken_requests}
    done = check(env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"ERROR: telemetry cannot start in a worker: {MISSING}" in done.stdout, done.stdout


@pytest.mark.matrix
@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_ready_line_says_telemetry_failed_and_requests_are_served(worker_class, receiver, gunicorn, broken_requests):
    env = otel_env(receiver.endpoint, PYTHONPATH=broken_requests)
    proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=1, env=env)
    assert proc.get("/?spans=2")[0] == 200
    # No pipeline, so no span records: sync never set a provider; gevent set
    # one in post_fork (runtime.claim_tracing) and turned its tracers off.
    assert proc.get("/recording") == (200, b"False")
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    ready = re.findall(r"gunicorn-otel: worker \d+ ready \((.*)\)", log)
    assert ready == [f"{worker_class} worker, telemetry failed to start: {MISSING}"], log
    assert "telemetry could not start in worker" in log
