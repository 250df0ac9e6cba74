"""The developer console (``OTEL_*_EXPORTER=pretty``): what a person sees in the quick start."""

from __future__ import annotations

import io
import os
import re
import signal

import pytest

from gunicorn_otel import settings
from tests.support.gunicorn_process import GunicornProcess

CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  ", re.MULTILINE)
SUMMARY = re.compile(r"gunicorn-otel: pid (\d+) flushed in")


def quick_start_env(**overrides: str) -> dict:
    """What examples/run exports (metric interval long, so only the exit export prints)."""
    env = {
        "OTEL_SERVICE_NAME": "example",
        "OTEL_TRACES_EXPORTER": "pretty",
        "OTEL_LOGS_EXPORTER": "pretty",
        "OTEL_METRICS_EXPORTER": "pretty",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "GUNICORN_OTEL_RUNTIME_METRICS": "false",
    }
    env.update(overrides)
    return env


def test_run_script_uses_the_pretty_console():
    with open(os.path.join(os.path.dirname(__file__), "..", "examples", "run")) as f:
        text = f.read()
    for signal_name in ("TRACES", "LOGS", "METRICS"):
        assert f"OTEL_{signal_name}_EXPORTER=${{OTEL_{signal_name}_EXPORTER:-pretty}}" in text
    assert "GUNICORN_OTEL_RUNTIME_METRICS=${GUNICORN_OTEL_RUNTIME_METRICS:-false}" in text


def test_two_requests_print_a_handful_of_lines(gunicorn):
    proc: GunicornProcess = gunicorn(
        "examples.app:app", worker_class="gthread", workers=2, env=quick_start_env(), ready_path="/health"
    )
    # The readiness probe is a request too: its lines are left out by trace id.
    probe = proc.wait_for_log(r"WARN     rendering /health  trace ([0-9a-f]{8})").group(1)
    assert proc.get("/")[0] == 200
    assert proc.get("/second")[0] == 200
    proc.wait_for_log(r"WARN     rendering /second", timeout=15)
    proc.wait_for_log(r"(└ render(?s:.*)){3}", timeout=15)
    result = proc.stop(signal.SIGTERM)
    assert result.returncode == 0
    log = proc.log_text()
    lines = [line for line in log.splitlines() if CONSOLE_LINE.match(line)]
    request_lines = [line for line in lines if not line.endswith("trace " + probe)]
    spans = [line for line in request_lines if "trace " in line and "WARN" not in line]
    logs = [line for line in request_lines if "  WARN  " in line]
    metrics = [line for line in request_lines if "  metric  " in line]
    # Per request: its server span, the child indented under it, and its log record.
    assert len(spans) == 4 and len(logs) == 2, "\n".join(request_lines)
    assert sum("└ render" in line for line in spans) == 2
    assert any(line.split("  ")[1].startswith("GET /second") for line in spans)
    # At exit each worker prints its own counters once (the probe's request is
    # counted there too) and its thread gauge, first seen: two lines per worker.
    names = sorted(line.split()[2] for line in metrics)
    assert names == ["gunicorn_otel.exported"] * 2 + ["gunicorn_otel.worker.threads"] * 2, "\n".join(request_lines)
    assert len(request_lines) == 10, "\n".join(request_lines)
    # Trace ids: the log line carries the trace id of the request's spans.
    second = next(line for line in logs if "/second" in line).rsplit("trace ", 1)[1]
    assert sum(line.endswith("trace " + second) for line in spans) == 2
    assert "\x1b[" not in log, "no colour in a file"
    assert '"trace_id"' not in log, "no JSON"
    assert len(set(SUMMARY.findall(log))) == 2, "each worker's flush summary is still printed"


def _spans_to(out) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    from gunicorn_otel._worker.console import PrettySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PrettySpanExporter(out)))
    with provider.get_tracer("t").start_as_current_span("failing") as span:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()


def test_colour_only_on_a_terminal():
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False, encoding="utf-8") as tty:
            _spans_to(tty)
        shown = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "\x1b[31mERROR boom\x1b[0m" in shown, repr(shown)
    plain = io.StringIO()
    _spans_to(plain)
    assert "\x1b" not in plain.getvalue() and "ERROR boom" in plain.getvalue()


def test_pretty_is_validated_and_console_keeps_the_sdk_json():
    assert settings.load({"OTEL_TRACES_EXPORTER": "pretty"}).exporting("traces").kind == "pretty"
    with pytest.raises(settings.SettingsError, match="pretty"):
        settings.load({"OTEL_TRACES_EXPORTER": "prety"})
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    from gunicorn_otel._worker import exporters

    console = exporters.build("traces", settings.load({"OTEL_TRACES_EXPORTER": "console"}).exporting("traces"))
    assert isinstance(console, ConsoleSpanExporter)
