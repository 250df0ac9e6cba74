"""Fault drills: what a collector and a process manager can do to a worker, with real processes.

For each fault: requests keep being served, the worker doesn't hang or crash-loop,
and every span is accounted for — exported (and received) or dropped with a reason.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.conftest import otel_env
from tests.support import slack
from tests.support.gunicorn_process import load, pid_alive

pytestmark = pytest.mark.slow  # real Gunicorn processes

SUMMARY = re.compile(
    r"gunicorn-otel: pid (\d+) flushed in ([\d.]+)s[^:]*: traces accepted=(\d+) exported=(\d+) dropped=(\d+)(?: \(([^)]*)\))?"
)


def summaries(log: str) -> list[dict]:
    out = []
    for pid, elapsed, accepted, exported, dropped, reasons in SUMMARY.findall(log):
        out.append(
            {
                "pid": int(pid),
                "elapsed": float(elapsed),
                "accepted": int(accepted),
                "exported": int(exported),
                "dropped": int(dropped),
                "reasons": dict((k, int(v)) for k, v in (r.split("=") for r in reasons.split(", ") if r)),
            }
        )
    return out


def assert_accounted(proc, receiver, made: int) -> list[dict]:
    """Every span made is either received or dropped with a reason, per the exit lines."""
    lines = summaries(proc.log_text())
    assert lines, proc.log_text()
    assert sum(s["accepted"] for s in lines) == made
    for s in lines:
        assert s["accepted"] == s["exported"] + s["dropped"], s
        assert sum(s["reasons"].values()) == s["dropped"], s
    received = len([s for s in receiver.spans() if s.name == "work"])
    assert received == sum(s["exported"] for s in lines)
    return lines


def test_collector_down_at_start_then_up(receiver, gunicorn):
    receiver.set_mode("down")
    env = otel_env(receiver.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="1", OTEL_BSP_SCHEDULE_DELAY="100")
    proc = gunicorn("wsgi_app:app", worker_class="gthread", workers=1, env=env)
    ok, errors = load(proc.base_url, "/?spans=2", requests=100, concurrency=4)
    assert (ok, errors) == (100, 0)
    # The SDK exporter reports the refused connection; wait for that, then heal.
    proc.wait_for_log(r"Failed to export|Transient error", timeout=15)
    receiver.set_mode("ok")
    ok, _ = load(proc.base_url, "/?spans=2", requests=100, concurrency=4)
    assert ok == 100
    assert receiver.wait_for(lambda: len(receiver.spans()) > 0, timeout=15), "export must resume"
    proc.stop(signal.SIGTERM, timeout=30)
    # Spans made while it was down were retried and delivered, or counted as failed.
    assert_accounted(proc, receiver, made=400)


def test_collector_goes_down_mid_load_and_comes_back(receiver, gunicorn):
    env = otel_env(receiver.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="1", OTEL_BSP_SCHEDULE_DELAY="100")
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=2, env=env)
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=2)[0] == 100
    assert receiver.wait_for(lambda: len(receiver.spans()) >= 200, timeout=15)
    receiver.set_mode("down")
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=2)[0] == 100
    receiver.set_mode("ok")
    before = len(receiver.spans())
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=2)[0] == 100
    assert receiver.wait_for(lambda: len(receiver.spans()) > before, timeout=15), "export must resume"
    result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.returncode == 0
    assert_accounted(proc, receiver, made=600)


def test_slow_collector_does_not_slow_requests(receiver, gunicorn):
    receiver.set_mode("slow", delay=1.0)
    env = otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="50", GUNICORN_OTEL_SHUTDOWN_TIMEOUT="3")
    proc = gunicorn("wsgi_app:app", worker_class="gthread", workers=1, env=env)
    started = time.monotonic()
    assert load(proc.base_url, "/?spans=5", requests=200, concurrency=4)[0] == 200
    assert time.monotonic() - started < 5.0, "a slow collector must not hold requests"
    result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.elapsed < 3.0 + slack.STOP
    lines = assert_accounted(proc, receiver, made=1000)
    assert all(s["elapsed"] < 3.0 + slack.BUSY for s in lines), lines


def test_503_with_retry_after_is_retried_then_accounted(receiver, gunicorn):
    receiver.set_mode("unavailable", retry_after=1)
    env = otel_env(receiver.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="4", OTEL_BSP_SCHEDULE_DELAY="100")
    proc = gunicorn("wsgi_app:app", worker_class="gthread", workers=1, env=env)
    assert load(proc.base_url, "/?spans=1", requests=20, concurrency=2)[0] == 20
    assert receiver.wait_for(lambda: receiver.rejected_count("/v1/traces") >= 2, timeout=15)
    receiver.set_mode("ok")  # the exporter's retry (after Retry-After) now succeeds
    assert receiver.wait_for(lambda: len([s for s in receiver.spans() if s.name == "work"]) >= 1, timeout=15)
    proc.stop(signal.SIGTERM, timeout=30)
    assert_accounted(proc, receiver, made=20)


def test_sigkill_of_a_worker_is_replaced_and_keeps_its_slot(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=2, env=otel_env(receiver.endpoint))
    assert load(proc.base_url, "/?spans=1", requests=20, concurrency=2)[0] == 20
    victim = proc.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    replacement = proc.wait_for_new_worker(known=2, timeout=15)
    proc.wait_for_log(rf"gunicorn-otel: worker {replacement} ready", timeout=15)
    assert load(proc.base_url, "/?spans=1", requests=50, concurrency=2)[0] == 50
    proc.stop(signal.SIGTERM, timeout=30)

    # The master's exit record says which slot the victim held (its own spans may have
    # died with it); every worker's resource says which slot it holds.
    victim_exits = [
        r
        for r in receiver.log_records()
        if r.resource.get("gunicorn.role") == "master" and r.attributes.get("gunicorn.worker.pid") == victim
    ]
    assert len(victim_exits) == 1, [r.body for r in receiver.log_records()]
    victim_slot = victim_exits[0].attributes["gunicorn.worker.slot"]
    slot_of = {}
    for item in [*receiver.spans(), *receiver.metrics()]:
        if item.resource.get("gunicorn.role") != "master":
            slot_of.setdefault(item.resource["process.pid"], set()).add(item.resource["gunicorn.worker.slot"])
    assert slot_of.get(replacement) == {victim_slot}, (victim, victim_slot, replacement, slot_of)
    assert [s for s in receiver.spans() if s.name == "work"], "the workers exported spans"
    assert set().union(*slot_of.values()) == {1, 2}, slot_of


def test_max_requests_recycling_loses_nothing(receiver, gunicorn):
    env = otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000")
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=1, env=env, args=("--max-requests", "30"))
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=1)[0] == 100
    proc.stop(signal.SIGTERM, timeout=30)
    lines = assert_accounted(proc, receiver, made=200 + 0)
    assert len(lines) >= 4, "each recycled worker flushed on its way out"
    assert all(s["dropped"] == 0 for s in lines)


def test_hup_reload_under_load_loses_nothing(receiver, gunicorn):
    env = otel_env(receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="600000")
    proc = gunicorn("wsgi_app:app", worker_class="gthread", workers=2, env=env)
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=2)[0] == 100
    old = set(proc.worker_pids())
    proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (any(pid_alive(p) for p in old) or len(proc.live_worker_pids()) < 2):
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in old)
    assert load(proc.base_url, "/?spans=2", requests=100, concurrency=2)[0] == 100
    proc.stop(signal.SIGTERM, timeout=30)
    lines = assert_accounted(proc, receiver, made=400)
    assert len(lines) == 4 and all(s["dropped"] == 0 for s in lines)


def test_self_metrics_report_exports_and_drops(receiver, gunicorn):
    env = otel_env(receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL="60000")
    proc = gunicorn("wsgi_app:app", worker_class="sync", workers=1, env=env)
    assert load(proc.base_url, "/?spans=3", requests=10, concurrency=1)[0] == 10
    proc.stop(signal.SIGTERM, timeout=30)
    exported = [m for m in receiver.metrics() if m.name == "gunicorn_otel.exported"]
    assert exported, [m.name for m in receiver.metrics()]
    points = {p.attributes[0].value.string_value: p.as_int for p in exported[-1].data_points()}
    # The final collection happens during shutdown, after the spans' export.
    assert points["traces"] == 30
    assert any(m.name == "gunicorn_otel.dropped" for m in receiver.metrics())
