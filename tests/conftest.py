"""Fixtures shared by the integration tests: a receiver, and gunicorn runs that always stop."""

from __future__ import annotations

import contextlib

import pytest

from tests.support.gunicorn_process import GunicornProcess
from tests.support.receiver import OTLPReceiver


def otel_env(endpoint: str, **overrides: str) -> dict:
    """Environment for a worker exporting everything to ``endpoint`` quickly."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "test-service",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": "5",
    }
    env.update(overrides)
    return env


@pytest.fixture
def receiver():
    with OTLPReceiver() as r:
        yield r


@pytest.fixture
def gunicorn(tmp_path):
    """Factory: ``gunicorn(app, worker_class=..., env=...)`` -> started GunicornProcess.

    Every process is killed by pid when the test ends, whatever happened.
    """
    with contextlib.ExitStack() as stack:
        count = 0

        def start(app, *, args=(), start=True, **kwargs):
            nonlocal count
            count += 1
            proc = GunicornProcess(
                app,
                args=("--no-control-socket", *args),
                log_path=tmp_path / f"gunicorn-{count}.log",
                **kwargs,
            )
            stack.enter_context(proc)
            if start:
                proc.start()
            return proc

        yield start
