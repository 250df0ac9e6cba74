"""Fixtures shared by the integration tests: a receiver, and gunicorn runs that always stop."""

from __future__ import annotations

import contextlib
import importlib.util

import pytest
from gunicorn import __version__ as GUNICORN_VERSION
from gunicorn.config import KNOWN_SETTINGS

from tests.support.gunicorn_process import GunicornProcess
from tests.support.receiver import OTLPReceiver

# Gunicorn 25.1 added a control socket (one per master, at a fixed path by
# default); parallel test servers must not share it.  Older Gunicorns (the
# declared floor is 23) have neither the socket nor the flag.
_NO_CONTROL_SOCKET = ("--no-control-socket",) if any(s.name == "control_socket" for s in KNOWN_SETTINGS) else ()
# Gunicorn's own asgi worker arrived in Gunicorn 24.
HAS_ASGI_WORKER = importlib.util.find_spec("gunicorn.workers.gasgi") is not None


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
            if kwargs.get("worker_class") == "asgi" and not HAS_ASGI_WORKER:
                pytest.skip(f"Gunicorn {GUNICORN_VERSION} has no asgi worker (added in Gunicorn 24)")
            count += 1
            proc = GunicornProcess(
                app,
                args=(*_NO_CONTROL_SOCKET, *args),
                log_path=tmp_path / f"gunicorn-{count}.log",
                **kwargs,
            )
            stack.enter_context(proc)
            if start:
                proc.start()
            return proc

        yield start
