"""A collector that is down: a few log lines, not a flood; every lost item counted; requests unaffected."""

from __future__ import annotations

import collections
import re
import signal
import time

import pytest

from tests.conftest import otel_env
from tests.support.receiver import blackhole

pytestmark = pytest.mark.slow  # real Gunicorn processes


INTERVAL = 2.0  # the limiter's line interval for these tests (60 s in production)
LINE = r"\[(\d+)\] \[WARNING\] gunicorn-otel: pid \d+: (\w+) export "  # (worker pid, signal)
FIRST = re.compile(LINE + r"failed \(")
STILL = re.compile(LINE + r"still failing: \d+ failed exports, \d+ items dropped in ([\d.]+)s; last reason: (.*)")
RECOVERED = re.compile(LINE + r"recovered after (\d+) failed exports")
SDK_LINES = re.compile(r"\] (Transient error|Failed to export|gunicorn-otel: \w+ exporter raised)")


def per_worker(pattern, log) -> collections.Counter:
    return collections.Counter((int(m.group(1)), m.group(2)) for m in pattern.finditer(log))


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_down_collector_logs_once_then_once_per_interval_then_recovery(worker_class, receiver, gunicorn):
    receiver.set_mode("down")  # connection refused on the receiver's port until it comes back
    env = otel_env(
        receiver.endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="300",  # metrics fail on their own, without requests
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        _GUNICORN_OTEL_EXPORT_LOG_INTERVAL=str(INTERVAL),
    )
    proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=2, env=env)
    workers = set(proc.worker_pids())
    statuses = collections.Counter()

    def enough_summaries() -> bool:
        still = per_worker(STILL, proc.log_text())
        return all(still[(pid, "metrics")] >= 2 for pid in workers)

    deadline = time.monotonic() + 40
    while not enough_summaries() and time.monotonic() < deadline:
        statuses[proc.get("/?spans=2")[0]] += 1  # bounded by the deadline
    log = proc.log_text()
    assert enough_summaries(), log
    assert set(statuses) == {200}, statuses

    assert not SDK_LINES.search(log), "the SDK's own failure lines are held back"
    first = per_worker(FIRST, log)
    assert all(first[(pid, "metrics")] == 1 for pid in workers), first
    assert max(first.values()) == 1, first
    for match in STILL.finditer(log):
        assert float(match.group(3)) >= INTERVAL, match.group(0)
        # The reason is the first thing the SDK said during the last failed export: the
        # connection error, or only its generic "due to timeout" line when the first
        # attempt used up the 1 s export timeout (seen under gevent).
        assert "Connection refused" in match.group(4) or "due to timeout" in match.group(4), match.group(0)

    receiver.set_mode("ok")
    # Both workers' metrics arrive again (the master's own metrics carry its pid too).
    assert receiver.wait_for(lambda: workers <= {m.resource["process.pid"] for m in receiver.metrics()}, 30)
    proc.wait_for_log(r"(?s)(metrics export recovered.*){2}")
    proc.stop(signal.SIGTERM, timeout=30)
    log = proc.log_text()
    recovered = per_worker(RECOVERED, log)
    assert all(recovered[(pid, "metrics")] == 1 for pid in workers), recovered
    assert set(recovered) <= set(first), "only a signal that failed can recover"


@pytest.mark.matrix
@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_metric_exports_cut_off_at_exit_are_counted(worker_class, gunicorn):
    with blackhole() as hole:
        env = otel_env(
            hole.endpoint,
            OTEL_TRACES_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRIC_EXPORT_INTERVAL="200",
            GUNICORN_OTEL_SHUTDOWN_TIMEOUT="1",
            GUNICORN_OTEL_MASTER_TELEMETRY="false",  # the worker's metric export is the only connection
        )
        proc = gunicorn("wsgi_app:app", worker_class=worker_class, workers=1, env=env)
        deadline = time.monotonic() + 20
        while not hole.accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hole.accepted, "a metric export must be under way before the stop"
        proc.stop(signal.SIGTERM, timeout=30)
    (line,) = re.findall(r"metrics exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?", proc.log_text())
    exported, dropped, reasons = line
    assert exported == "0"
    assert int(dropped) > 0, proc.log_text()
    assert f"shutdown_deadline={dropped}" in reasons, line
