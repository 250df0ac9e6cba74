"""A real ``opentelemetry-instrument gunicorn -c python:gunicorn_otel.conf`` run, as users start it.

opentelemetry-distro and the requests instrumentation are installed (test
extras); the wrapper's sitecustomize builds the SDK's providers in the master
and loads every instrumentation it finds before Gunicorn reads its config.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.conftest import otel_env
from tests.support.gunicorn_process import APPS, GunicornProcess
from tests.support.receiver import OTLPGrpcReceiver

pytestmark = pytest.mark.slow  # real Gunicorn processes

BIN = os.path.dirname(sys.executable)
# What a half-owned worker prints; none of it may appear.
BAD_LOG = re.compile(
    r"Overriding of current|Traceback|KeyError|Exception ignored|MonkeyPatchWarning|"
    r"already set in this process|Exporter already shutdown"
)
SERVER, CLIENT = 2, 3  # OTLP span kinds


def is_call(span) -> bool:
    """The server span of GET /call: FastAPI names it by its route, a plain app by its method."""
    attributes = span.attributes
    path = attributes.get("url.path") or attributes.get("http.target") or urlsplit(attributes.get("http.url", "")).path
    return span.kind == SERVER and span.name in ("GET /call", "GET") and path == "/call"


CALLS = 6


class InstrumentedGunicorn(GunicornProcess):
    """Gunicorn started through opentelemetry-instrument (which execs it)."""

    def command(self) -> list[str]:
        python_m_gunicorn, rest = super().command()[:3], super().command()[3:]
        assert python_m_gunicorn[1:] == ["-m", "gunicorn"]
        return [os.path.join(BIN, "opentelemetry-instrument"), os.path.join(BIN, "gunicorn"), *rest]


@pytest.fixture
def instrumented(tmp_path):
    started: list[InstrumentedGunicorn] = []

    def start(app, *, env, start=True, args=(), **kwargs):
        proc = InstrumentedGunicorn(
            app,
            args=("--no-control-socket", *args),
            env=env,
            log_path=tmp_path / f"gunicorn-{len(started)}.log",
            **kwargs,
        )
        started.append(proc)
        proc.__enter__()
        if start:
            proc.start()
        return proc

    yield start
    for proc in started:
        proc.__exit__(None, None, None)


def zero_code_env(endpoint: str, **overrides: str) -> dict:
    env = otel_env(
        endpoint,
        OTEL_SERVICE_NAME="zc",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        GUNICORN_OTEL_WRAP_APP="true",
        APP_CLIENT_URL=endpoint + "/health",
    )
    env.update(overrides)
    return env


CASES = [
    pytest.param("sync", False, {}, id="sync"),
    pytest.param("gthread", False, {}, id="gthread"),
    pytest.param("gthread", True, {}, id="gthread-preload"),
    pytest.param("tornado", False, {}, id="tornado"),
    pytest.param("uvicorn_worker.UvicornWorker", False, {}, id="uvicorn-fastapi"),
    pytest.param("asgi", True, {}, id="asgi-fastapi-preload"),
    pytest.param(
        "gevent", False, {"OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": "patch_all"}, id="gevent"
    ),
    pytest.param(
        "gevent", True, {"OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": "patch_all"}, id="gevent-preload"
    ),
]


@pytest.mark.parametrize("worker_class, preload, extra", CASES)
def test_instrumentations_keep_working_on_our_providers(worker_class, preload, extra, receiver, instrumented):
    env = zero_code_env(receiver.endpoint, **extra)
    app = "zero_code_app:app"
    if worker_class in ("uvicorn_worker.UvicornWorker", "asgi"):
        app = "fastapi_zero_code_app:app"  # server spans from the FastAPI instrumentation the wrapper loaded
    proc = instrumented(app, worker_class=worker_class, workers=2, env=env, args=("--preload",) if preload else ())
    for _ in range(CALLS):
        assert proc.get("/call")[0] == 200
    workers = set(proc.worker_pids())
    result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.returncode == 0

    log = proc.log_text()
    assert not BAD_LOG.search(log), log
    assert "opentelemetry-instrument detected; shut down its TracerProvider, MeterProvider, LoggerProvider" in log
    spans = receiver.spans()
    servers = [s for s in spans if is_call(s)]
    clients = [s for s in spans if s.kind == CLIENT]
    # Exactly once each: the distro's pipeline exported nothing of its own.
    assert len(servers) == CALLS, [(s.name, s.kind) for s in spans]
    assert len(clients) == CALLS
    by_id = {s.span_id: s for s in servers}
    for client in clients:
        parent = by_id.get(client.proto.parent_span_id.hex())
        assert parent is not None and parent.trace_id == client.trace_id, "the client span is inside a server span"
    for span in servers + clients:
        assert span.resource["process.pid"] in workers
        assert span.resource["gunicorn.worker.slot"] in (1, 2)
        assert span.resource["service.name"] == "zc"
    records = [r for r in receiver.log_records() if r.body.startswith("called ")]
    assert len(records) == CALLS, "each app log record once (no second handler from the logging instrumentation)"
    assert {r.resource["process.pid"] for r in records} <= workers
    # Metrics: the requests instrumentation's histogram on our provider; nothing from a master SDK provider.
    metrics = receiver.metrics()
    client_metrics = [m for m in metrics if m.name.startswith("http.client.")]
    assert client_metrics and all(m.resource.get("process.pid") in workers for m in client_metrics)
    assert all(m.resource.get("gunicorn.role") == "master" or m.resource.get("process.pid") in workers for m in metrics)
    assert log.count("traces accepted=") == 2


def test_gevent_without_early_patching_stops_with_what_to_change(receiver, instrumented):
    proc = instrumented(
        "zero_code_app:app", worker_class="gevent", workers=1, env=zero_code_env(receiver.endpoint), start=False
    )
    code, log = proc.run_to_exit(timeout=30)
    assert code != 0
    assert "gunicorn-otel: cannot run correctly" in log
    assert "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH=patch_all" in log
    assert "Booting worker" not in log


def test_distro_default_grpc_is_named_and_works(instrumented):
    with OTLPGrpcReceiver() as grpc_receiver:
        env = zero_code_env(grpc_receiver.endpoint)
        del env["OTEL_EXPORTER_OTLP_PROTOCOL"]  # the distro picks gRPC
        env["APP_CLIENT_URL"] = "http://127.0.0.1:9/unreachable"
        proc = instrumented("zero_code_app:app", worker_class="gthread", workers=1, env=env)
        for _ in range(3):
            assert proc.get("/call") == (200, b"ok")
        proc.stop(signal.SIGTERM, timeout=30)
        log = proc.log_text()
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc was set by opentelemetry-distro" in log, log
        assert len([s for s in grpc_receiver.spans() if is_call(s)]) == 3
    assert not BAD_LOG.search(log), log


def test_a_settings_error_caused_by_the_distro_says_so():
    # The distro's real configure() (os.environ.setdefault), then the message our master prints.
    code = (
        "import os; os.environ.pop('OTEL_EXPORTER_OTLP_PROTOCOL', None)\n"
        "from opentelemetry.distro import OpenTelemetryDistro\n"
        "OpenTelemetryDistro().configure()\n"
        "from gunicorn_otel._master import distro_defaults\n"
        "print(distro_defaults.explain(\"OTLP protocol 'grpc' for traces needs the gRPC exporter\"))\n"
        "print('user:' + distro_defaults.explain('OTEL_BSP_MAX_QUEUE_SIZE is invalid'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert "was not set by you: opentelemetry-distro sets it by default" in first
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in first
    assert second == "user:"


def test_check_under_the_wrapper_and_without_it():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_OTEL_"))}
    env = {**clean, "OTEL_SERVICE_NAME": "zc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    plain = subprocess.run(
        [sys.executable, "-m", "gunicorn_otel", "check", "--connect-timeout", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "opentelemetry-instrument is usable here" in plain.stdout, plain.stdout
    assert "opentelemetry-distro sets OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in plain.stdout
    wrapped = subprocess.run(
        [
            os.path.join(BIN, "opentelemetry-instrument"),
            sys.executable,
            "-m",
            "gunicorn_otel",
            "check",
            "--connect-timeout",
            "0.2",
            "--",
            "-k",
            "gevent",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "running under opentelemetry-instrument" in wrapped.stdout, wrapped.stdout + wrapped.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc was set by opentelemetry-distro" in wrapped.stdout
    assert "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH=patch_all" in wrapped.stdout
    assert wrapped.returncode == 2


def test_the_master_exports_nothing_it_queued_before_the_take_over(receiver, instrumented):
    # A long delay: the wrapper's thread would not export the span by itself; only a drain at shutdown could.
    env = zero_code_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000")
    proc = instrumented(
        "zero_code_app:app", worker_class="sync", workers=1, env=env, config=str(APPS / "span_in_master_conf.py")
    )
    assert proc.get("/call")[0] == 200
    proc.stop(signal.SIGTERM, timeout=30)
    names = [s.name for s in receiver.spans()]
    assert [s for s in receiver.spans() if is_call(s)]
    assert "made-in-the-master" not in names
    assert not BAD_LOG.search(proc.log_text()), proc.log_text()
