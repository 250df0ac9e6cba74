"""The master's own telemetry: boots, exits by reason, reloads, worker count; nothing leaks into workers."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import otel_env
from tests.support.receiver import blackhole

MASTER = "master"


def master_metric(receiver, name):
    found = [m for m in receiver.metrics() if m.name == name and m.resource.get("gunicorn.role") == MASTER]
    return found[-1] if found else None


def points(metric, attribute):
    """Sum of the metric's points by one attribute's value."""
    out = {}
    for p in metric.data_points():
        key = next((a.value.string_value for a in p.attributes if a.key == attribute), None)
        out[key] = out.get(key, 0) + p.as_int
    return out


def test_boots_exits_reloads_and_count(receiver, gunicorn):
    proc = gunicorn("wsgi_app:app", workers=2, env=otel_env(receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL="1000"))
    assert receiver.wait_for(lambda: master_metric(receiver, "gunicorn.master.workers") is not None, timeout=15)
    victim = proc.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert receiver.wait_for(
        lambda: any("signal_SIGKILL" in r.body for r in receiver.log_records() if r.resource.get("gunicorn.role") == MASTER),
        timeout=15,
    ), [r.body for r in receiver.log_records()]
    proc.signal(signal.SIGHUP)
    assert receiver.wait_for(lambda: master_metric(receiver, "gunicorn.master.reloads") is not None, timeout=15)

    def settled():
        boots = master_metric(receiver, "gunicorn.master.worker.boots")
        count = master_metric(receiver, "gunicorn.master.workers")
        return boots and sum(points(boots, "replacement").values()) >= 5 and count.data_points()[0].as_int == 2

    assert receiver.wait_for(settled, timeout=20)
    proc.stop(signal.SIGTERM, timeout=30)
    exits = points(master_metric(receiver, "gunicorn.master.worker.exits"), "reason")
    assert exits.get("signal_SIGKILL") == 1, exits
    # Workers' own telemetry never carries the master's role, and the master never exports as a worker.
    assert all(s.resource.get("gunicorn.role") != MASTER for s in receiver.spans())
    assert {r.resource["process.pid"] for r in receiver.log_records() if r.resource.get("gunicorn.role") == MASTER} == {proc.master_pid}


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_workers_inherit_no_threads_from_the_master(receiver, gunicorn):
    counts = {}
    for enabled in ("true", "false"):
        env = otel_env(receiver.endpoint, GUNICORN_OTEL_MASTER_TELEMETRY=enabled)
        proc = gunicorn("wsgi_app:app", workers=1, env=env)
        counts[enabled] = _threads(proc.worker_pids()[0])
        proc.stop(signal.SIGTERM, timeout=30)
    assert counts["true"] == counts["false"], counts


def test_black_hole_collector_does_not_slow_the_master(gunicorn):
    with blackhole() as hole:
        env = otel_env(hole.endpoint, OTEL_METRIC_EXPORT_INTERVAL="1000", GUNICORN_OTEL_SHUTDOWN_TIMEOUT="2")
        proc = gunicorn("wsgi_app:app", workers=2, env=env)
        victim = proc.worker_pids()[0]
        started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while len(proc.worker_pids()) < 3 and time.monotonic() - started < 10:
            time.sleep(0.02)
        assert time.monotonic() - started < 2.5, "the arbiter must replace workers without waiting on exports"
        proc.wait_for_log(r"gunicorn-otel: worker %d ready" % proc.worker_pids()[2], timeout=15)
        result = proc.stop(signal.SIGTERM, timeout=30)
    assert result.elapsed < 2.0 + 2.0 + 2.5, result.elapsed
