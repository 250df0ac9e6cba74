"""``gunicorn-otel check``: exit codes, redaction, traps — run as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.receiver import OTLPReceiver


def check(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_OTEL_", "FASTAPI_OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn_otel", "check", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthy_configuration_exits_0_and_redacts_headers():
    with OTLPReceiver() as receiver:
        done = check(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_SERVICE_NAME": "shop",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=TOPSECRET",
            }
        )
    assert done.returncode == 0, done.stdout
    assert "TOPSECRET" not in done.stdout
    assert "x-api-key" in done.stdout
    assert "gevent   built in post_worker_init" in done.stdout
    assert "span encoder: C extension" in done.stdout
    assert done.stdout.strip().endswith("OK")


def test_check_says_no_encoder_of_ours_runs_for_a_grpc_exporter():
    with OTLPReceiver() as receiver:
        done = check({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})
    assert "span encoder: none of gunicorn-otel's (the traces exporter is not OTLP/HTTP)" in done.stdout, done.stdout


def test_check_names_the_python_encoder_when_the_c_one_is_off():
    with OTLPReceiver() as receiver:
        done = check({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "GUNICORN_OTEL_NATIVE_ENCODER": "false"})
    assert done.returncode == 0, done.stdout
    assert "span encoder: Python (GUNICORN_OTEL_NATIVE_ENCODER=false)" in done.stdout


def test_unreachable_collector_and_traps_exit_1_in_json():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "GUNICORN_OTEL_SHUTDOWN_TIMEOUT": "40",
        "FASTAPI_OTEL_AUTO_CONFIGURE": "true",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    done = check(env, "--json", "--connect-timeout", "0.5", "--", "--preload", "--graceful-timeout", "30")
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    warnings = "\n".join(report["warnings"])
    assert "does not accept connections" in warnings
    assert "not below graceful_timeout=30s" in warnings
    assert "FASTAPI_OTEL_AUTO_CONFIGURE" in warnings
    assert "--preload with OTLP over gRPC" in warnings


def test_invalid_configuration_exits_2():
    done = check({"OTEL_TRACES_SAMPLER_ARG": "2"})
    assert done.returncode == 2
    assert "OTEL_TRACES_SAMPLER_ARG='2' is invalid" in done.stdout
